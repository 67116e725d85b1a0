-- Installation mail (staff and tenants' contacts): its own queue, sent by the worker.

-- name: enqueue(recipient, template, payload)$
INSERT INTO staff_mail (recipient, template, payload)
VALUES (:recipient, :template, :payload)
RETURNING id;

-- name: claim(lease_seconds, lim)
-- A lease by moving next_at: a worker that dies mid-send leaves the row due again after it.
UPDATE staff_mail m
   SET next_at = now() + make_interval(secs => :lease_seconds), attempts = m.attempts + 1
 WHERE m.id IN (SELECT id FROM staff_mail
                 WHERE state = 'queued' AND next_at <= now()
                 ORDER BY next_at
                 LIMIT :lim
                 FOR UPDATE SKIP LOCKED)
RETURNING m.id, m.recipient, m.template, m.payload, m.attempts;

-- name: finish(id, state, reply)!
-- Sent, bounced (a 5xx for the recipient: kept as the record of the hard bounce) or failed:
-- the payload, which may hold a single-use link, is cleared.
UPDATE staff_mail
   SET state = :state, reply = :reply, payload = NULL, finished_at = now()
 WHERE id = :id AND state = 'queued';

-- name: retry(id, seconds, reply)!
UPDATE staff_mail
   SET next_at = now() + make_interval(secs => :seconds), reply = :reply
 WHERE id = :id AND state = 'queued';

-- name: report_failing_endpoints(failing_after_seconds)
-- Endpoints failing for a day, not yet reported in this failing spell: marked reported in the
-- statement that finds them (a success clears failing_since and failing_reported_at, so the
-- next spell is reported again), with the tenant's contact address.
UPDATE event_endpoints p
   SET failing_reported_at = now()
  FROM tenants t
 WHERE t.id = p.tenant_id
   AND p.active
   AND p.failing_reported_at IS NULL
   AND p.failing_since <= now() - make_interval(secs => :failing_after_seconds)
RETURNING p.id, p.tenant_id, p.url, p.failing_since, t.slug, t.contact_email;

-- name: signin_is_new(account_id, ip, user_agent)$
-- A sign-in is new when the account has signed in before, never from this address and browser
-- (sessions still awaiting a code do not count: the password alone opened nothing).
SELECT EXISTS (SELECT 1 FROM staff_sessions
                WHERE account_id = :account_id AND NOT awaiting_code)
   AND NOT EXISTS (SELECT 1 FROM staff_sessions
                    WHERE account_id = :account_id AND NOT awaiting_code
                      AND ip = :ip AND user_agent = :user_agent);
