-- The request queue (mailer/rights/queue.py): what is still to do, overdue first; rejection,
-- attaching a request to a subscriber, and a client's removal list (keyed hashes only).

-- name: open_requests(tenant_id)
-- Still to do, the earliest (extended) deadline first, so the overdue ones lead. Served by
-- data_requests_open.
SELECT r.id, r.kind, r.status, r.subscriber_id, r.requester, r.received_at, r.due_at,
       r.extended_due_at, r.extension_reason, r.verified_at, r.detail,
       coalesce(r.extended_due_at, r.due_at) AS effective_due_at,
       (SELECT count(*) FROM client_removal_addresses a
         WHERE a.data_request_id = r.id) AS removal_addresses
  FROM data_requests r
 WHERE r.tenant_id = :tenant_id AND r.status IN ('awaiting_verification', 'open')
 ORDER BY coalesce(r.extended_due_at, r.due_at), r.id;

-- name: closed_requests(tenant_id, lim)
-- The latest closed (done or rejected), newest first, with their receipts or reasons.
SELECT id, kind, status, subscriber_id, received_at, due_at, extended_due_at, completed_at,
       completed_by, receipt, rejection_reason, rejected_at, rejected_by,
       coalesce(completed_at, rejected_at) AS closed_at
  FROM data_requests
 WHERE tenant_id = :tenant_id AND status IN ('done', 'rejected')
 ORDER BY coalesce(completed_at, rejected_at, received_at) DESC, id DESC
 LIMIT :lim;

-- name: reject_request(tenant_id, id, reason, now, by)^
-- Only a request still to do can be rejected; a done one stays done.
UPDATE data_requests
   SET status = 'rejected', rejection_reason = :reason, rejected_at = :now, rejected_by = :by
 WHERE tenant_id = :tenant_id AND id = :id AND status IN ('awaiting_verification', 'open')
RETURNING *;

-- name: attach_subscriber(tenant_id, id, subscriber_id)^
-- A partner withdrawal that mail could not match, once staff found the person; only once.
UPDATE data_requests SET subscriber_id = :subscriber_id
 WHERE tenant_id = :tenant_id AND id = :id AND kind = 'partner_withdrawal'
   AND status = 'open' AND subscriber_id IS NULL
RETURNING *;

-- name: add_removal_addresses(data_request_id, keys, lines)$
-- One batch of a client's list; an address named twice counts once.
WITH added AS (
    INSERT INTO client_removal_addresses (data_request_id, address_key, line)
    SELECT :data_request_id, k, l
      FROM unnest(CAST(:keys AS bytea[]), CAST(:lines AS integer[])) AS x(k, l)
    ON CONFLICT DO NOTHING
    RETURNING 1)
SELECT count(*) FROM added;

-- name: removal_batch(tenant_id, data_request_id, after_key, lim)
-- A page of the list, each address with the live subscriber it names (if any) and whether a
-- suppression holds it (an erased person keeps one: DESIGN invariant 2).
SELECT a.address_key, s.id AS subscriber_id,
       EXISTS (SELECT 1 FROM suppressions x
                WHERE x.tenant_id = :tenant_id AND x.address_key = a.address_key) AS suppressed
  FROM client_removal_addresses a
  LEFT JOIN subscribers s
         ON s.tenant_id = :tenant_id AND s.email_key = a.address_key AND s.status = 'active'
 WHERE a.data_request_id = :data_request_id AND a.address_key > :after_key
 ORDER BY a.address_key
 LIMIT :lim;

-- name: set_detail(tenant_id, id, detail)^
UPDATE data_requests SET detail = :detail WHERE tenant_id = :tenant_id AND id = :id
RETURNING *;
