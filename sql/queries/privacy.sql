-- Data requests, single-use data links, the subject-access export, erasure, tenant export and
-- purge, partner exports (mailer/privacy.py, mailer/erasure.py, mailer/partners.py).

-- name: insert_request(tenant_id, subscriber_id, kind, requester, status, received_at, due_at, verified_at, detail)^
INSERT INTO data_requests (tenant_id, subscriber_id, kind, requester, status, received_at, due_at,
                           verified_at, detail)
VALUES (:tenant_id, :subscriber_id, :kind, :requester, :status, :received_at, :due_at,
        :verified_at, :detail)
RETURNING *;

-- name: get_request(tenant_id, id)^
SELECT * FROM data_requests WHERE tenant_id = :tenant_id AND id = :id;

-- name: lock_request(tenant_id, id)^
SELECT * FROM data_requests WHERE tenant_id = :tenant_id AND id = :id FOR UPDATE;

-- name: extend_request(tenant_id, id, extended_due_at, extension_reason)^
-- The WHERE repeats the rules the caller checked, so a concurrent extension cannot slip in.
UPDATE data_requests SET extended_due_at = :extended_due_at, extension_reason = :extension_reason
 WHERE tenant_id = :tenant_id AND id = :id AND extended_due_at IS NULL
   AND status NOT IN ('done', 'rejected')
RETURNING *;

-- name: verify_request(tenant_id, id, now)^
UPDATE data_requests SET status = 'open', verified_at = :now
 WHERE tenant_id = :tenant_id AND id = :id AND status = 'awaiting_verification'
RETURNING *;

-- name: complete_request(tenant_id, id, now, completed_by, receipt)^
-- Only an open (verified) request can be done: nothing is disclosed or deleted before. The
-- receipt says what its action did (migration 0110: no request is done without one).
UPDATE data_requests SET status = 'done', completed_at = :now, completed_by = :completed_by,
       receipt = :receipt
 WHERE tenant_id = :tenant_id AND id = :id AND status = 'open'
RETURNING *;

-- name: list_requests(tenant_id, overdue_at)
-- :tenant_id NULL lists every tenant's; :overdue_at set keeps the requests still not done at
-- that time past their (extended) deadline. Served by data_requests_open.
SELECT r.id, r.tenant_id, t.slug AS tenant, r.subscriber_id, r.kind, r.status, r.received_at,
       r.due_at, r.extended_due_at, r.extension_reason, r.verified_at, r.completed_at,
       r.completed_by, t.time_zone
  FROM data_requests r JOIN tenants t ON t.id = r.tenant_id
 WHERE (CAST(:tenant_id AS bigint) IS NULL OR r.tenant_id = :tenant_id)
   AND (CAST(:overdue_at AS timestamptz) IS NULL
        OR (r.status NOT IN ('done', 'rejected')
            AND coalesce(r.extended_due_at, r.due_at) <= :overdue_at))
 ORDER BY coalesce(r.extended_due_at, r.due_at), r.id;

-- name: requests_of(tenant_id, subscriber_id)
SELECT id, kind, status, received_at, due_at, extended_due_at, verified_at, completed_at
  FROM data_requests WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id ORDER BY id;

-- name: insert_link(tenant_id, subscriber_id, purpose, expires_at)$
INSERT INTO action_links (tenant_id, subscriber_id, purpose, expires_at)
VALUES (:tenant_id, :subscriber_id, :purpose, :expires_at)
RETURNING id;

-- name: get_link(tenant_id, id)^
SELECT * FROM action_links WHERE tenant_id = :tenant_id AND id = :id;

-- name: consume_link(tenant_id, id, now)^
-- Single use: of two clicks racing, only one UPDATE finds used_at still NULL.
UPDATE action_links SET used_at = :now
 WHERE tenant_id = :tenant_id AND id = :id AND used_at IS NULL AND expires_at > :now
RETURNING *;

-- name: close_links(tenant_id, subscriber_id, now)!
-- Ends every open data link and session of the person (after erasure).
UPDATE action_links SET expires_at = least(expires_at, :now), used_at = coalesce(used_at, :now)
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id;

-- name: subscriber_profile(tenant_id, id)^
SELECT id, email, name, status, partner_consent, age_attested_at, created_at, updated_at, erased_at
  FROM subscribers WHERE tenant_id = :tenant_id AND id = :id;

-- name: consent_history(tenant_id, subscriber_id)
SELECT e.id, e.occurred_at, t.slug AS topic, e.action, e.effect, e.source, e.lawful_basis,
       pv.version AS policy_version, e.campaign_id,
       host(ev.ip) AS ip, ev.user_agent, ev.form_text, ev.message_id, ev.detail AS evidence_detail
  FROM consent_events e
  LEFT JOIN topics t ON t.id = e.topic_id
  LEFT JOIN policy_versions pv ON pv.id = e.policy_version_id
  LEFT JOIN consent_evidence ev ON ev.id = e.evidence_id
 WHERE e.tenant_id = :tenant_id AND e.subscriber_id = :subscriber_id
 ORDER BY e.id;

-- name: deliveries_of(tenant_id, subscriber_id)
SELECT d.id, d.kind, d.campaign_id, c.subject AS campaign_subject, d.template, d.state,
       d.created_at, d.sent_at, d.last_reply_code
  FROM deliveries d LEFT JOIN campaigns c ON c.id = d.campaign_id
 WHERE d.tenant_id = :tenant_id AND d.subscriber_id = :subscriber_id
 ORDER BY d.id;

-- name: bounces_of(tenant_id, address_key)
SELECT id, delivery_id, status, permanent, source, occurred_at
  FROM bounce_events WHERE tenant_id = :tenant_id AND address_key = :address_key ORDER BY id;

-- name: set_name(tenant_id, id, name)^
UPDATE subscribers SET name = :name, updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id AND status = 'active'
RETURNING id;

-- name: set_address(tenant_id, id, email, email_key)^
UPDATE subscribers SET email = :email, email_key = :email_key, updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id AND status = 'active'
RETURNING id;

-- name: pending_rectification(tenant_id, subscriber_id)^
-- The newest address change awaiting confirmation from the new mailbox.
SELECT * FROM data_requests
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id AND kind = 'rectify'
   AND status = 'awaiting_verification'
 ORDER BY id DESC LIMIT 1;

-- name: record_audit(actor, tenant_id, action, target_type, target_id, detail)!
INSERT INTO audit_log (actor, tenant_id, action, target_type, target_id, detail)
VALUES (:actor, :tenant_id, :action, :target_type, :target_id, :detail);

-- name: lock_subscriber(tenant_id, id)^
SELECT * FROM subscribers WHERE tenant_id = :tenant_id AND id = :id FOR UPDATE;

-- name: live_subscriptions(tenant_id, subscriber_id)
SELECT topic_id FROM subscriptions
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id AND state <> 'unsubscribed';

-- name: erase_evidence(tenant_id, ids, now)$
-- Evidence is reached through the ledger rows of these people; the rows themselves stay.
WITH done AS (
    UPDATE consent_evidence SET ip = NULL, user_agent = NULL, form_text = NULL,
           message_id = NULL, detail = '{}', erased_at = :now
     WHERE tenant_id = :tenant_id AND erased_at IS NULL
       AND id IN (SELECT evidence_id FROM consent_events
                   WHERE tenant_id = :tenant_id AND subscriber_id = ANY(:ids)
                     AND evidence_id IS NOT NULL)
    RETURNING 1)
SELECT count(*) FROM done;

-- name: address_keys_of(tenant_id, ids)
-- The keyed hash of every address these people ever had (kept by triggers, migration 0050).
SELECT DISTINCT address_key FROM subscriber_addresses
 WHERE tenant_id = :tenant_id AND subscriber_id = ANY(:ids);

-- name: cancel_deliveries(tenant_id, ids, keys)$
-- Queued mail of these people will never go out, whether it names them by id or only by
-- address (a staff test send); a message being sent right now (leased) is left to its worker,
-- which reads the address at send time and finds none.
WITH done AS (
    UPDATE deliveries SET state = 'cancelled', updated_at = now()
     WHERE tenant_id = :tenant_id
       AND (subscriber_id = ANY(:ids) OR recipient_key = ANY(:keys))
       AND state IN ('queued', 'deferred')
    RETURNING 1)
SELECT count(*) FROM done;

-- name: scrub_deliveries(tenant_id, ids, keys)$
-- The address of transactional mail (test sends included, found by the keyed hash of any
-- address the person had), its payload (links) and the remote reply, which often quotes the
-- address ("550 <bob@example.com>: no such user").
WITH done AS (
    UPDATE deliveries SET recipient = NULL, payload = '{}', last_reply = NULL, updated_at = now()
     WHERE tenant_id = :tenant_id
       AND (subscriber_id = ANY(:ids) OR recipient_key = ANY(:keys)) AND state <> 'sending'
       AND (recipient IS NOT NULL OR payload <> '{}' OR last_reply IS NOT NULL)
    RETURNING 1)
SELECT count(*) FROM done;

-- name: scrub_inbound(tenant_id, ids, keys, emails)$
-- Raw inbound mail and relay webhook bodies about these people, and what was parsed from
-- them: by subscriber, by the delivery it answered (a DSN or a reply to a test send), by the
-- keyed hashes of the addresses it names (any address the person had), or, as a last resort
-- for what matched no tenant, by the current address itself in the envelope, the parsed
-- fields or the raw bytes. :emails are lower-case. A scan of the
-- tenant's inbound rows: erasure is rare and raw mail expires after a retention period.
WITH mine AS (
    SELECT id FROM deliveries
     WHERE tenant_id = :tenant_id AND (subscriber_id = ANY(:ids) OR recipient_key = ANY(:keys))
), done AS (
    UPDATE inbound_events ev SET raw = NULL, raw_expires_at = NULL, envelope_from = NULL,
           envelope_rcpt = NULL, parsed = '{}'
     WHERE (ev.tenant_id = :tenant_id OR ev.tenant_id IS NULL)
       AND (ev.raw IS NOT NULL OR ev.envelope_from IS NOT NULL OR ev.envelope_rcpt IS NOT NULL
            OR ev.parsed <> '{}')
       AND (ev.subscriber_id = ANY(:ids)
            OR ev.delivery_id IN (SELECT id FROM mine)
            OR ev.address_keys && CAST(:keys AS bytea[])
            OR EXISTS (SELECT 1 FROM unnest(CAST(:emails AS text[])) AS e(email)
                        WHERE strpos(lower(concat_ws(' ', ev.envelope_from, ev.envelope_rcpt,
                                                     ev.parsed::text)), e.email) > 0
                           OR strpos(lower(encode(coalesce(ev.raw, ''::bytea), 'escape')),
                                     e.email) > 0))
    RETURNING 1)
SELECT count(*) FROM done;

-- name: scrub_requests(tenant_id, subscriber_id, email, email_key)$
-- A request keeps its kind, dates, outcome and receipt; the requester's address as they wrote
-- it (also on a request that matched nobody then) becomes its keyed hash, the proof that the
-- request was handled; a pending new address in the detail goes, and so do the reasons staff
-- wrote for a rejection or an extension (free text that may name the person; that there was
-- a reason, and when, stays).
WITH done AS (
    UPDATE data_requests
       SET requester_key = CASE WHEN requester IS NULL THEN requester_key
                                ELSE CAST(:email_key AS bytea) END,
           requester = NULL, detail = '{}',
           rejection_reason = CASE WHEN rejection_reason IS NULL THEN NULL ELSE '(erased)' END,
           extension_reason = CASE WHEN extension_reason IS NULL THEN NULL ELSE '(erased)' END
     WHERE tenant_id = :tenant_id
       AND (subscriber_id = :subscriber_id OR strpos(lower(requester), lower(:email)) > 0)
       AND (requester IS NOT NULL OR detail <> '{}'
            OR rejection_reason IS DISTINCT FROM '(erased)' AND rejection_reason IS NOT NULL
            OR extension_reason IS DISTINCT FROM '(erased)' AND extension_reason IS NOT NULL)
    RETURNING 1)
SELECT count(*) FROM done;

-- name: scrub_partner_claims(tenant_id, ids)$
-- A partner-withdrawal claim mailed before the person was known holds the address as they
-- wrote it; found by the person's keyed hash, so run before erase_subscribers clears it.
WITH done AS (
    UPDATE partner_claims c SET requester = '(erased)', auth = '{}', sending_host = NULL
      FROM subscribers s
     WHERE s.tenant_id = :tenant_id AND s.id = ANY(:ids)
       AND c.tenant_id = s.tenant_id AND c.requester_key = s.email_key
       AND c.requester <> '(erased)'
    RETURNING 1)
SELECT count(*) FROM done;

-- name: scrub_import_errors(tenant_id, email)$
-- An import's per-row error may quote the address; found by the address itself, inside the
-- erasing transaction, before the address is gone.
WITH done AS (
    UPDATE import_errors SET reason = '(erased)'
     WHERE import_id IN (SELECT id FROM imports WHERE tenant_id = :tenant_id)
       AND strpos(lower(reason), lower(:email)) > 0
    RETURNING 1)
SELECT count(*) FROM done;

-- name: erase_subscribers(tenant_id, ids, now)$
WITH done AS (
    UPDATE subscribers SET email = NULL, email_key = NULL, name = NULL, status = 'erased',
           erased_at = :now, updated_at = :now
     WHERE tenant_id = :tenant_id AND id = ANY(:ids) AND status = 'active'
    RETURNING 1)
SELECT count(*) FROM done;

-- name: close_links_of(tenant_id, ids, now)!
-- Ends every open data link and self-service session of these people.
UPDATE action_links SET expires_at = least(expires_at, :now), used_at = coalesce(used_at, :now)
 WHERE tenant_id = :tenant_id AND subscriber_id = ANY(:ids);

-- name: partner_exports_of(tenant_id, subscriber_id)
-- GDPR Art. 19: the partner exports this person was in, so staff can tell those recipients.
SELECT e.id, e.created_at, e.created_by, e.detail
  FROM export_subscribers es JOIN exports e ON e.id = es.export_id
 WHERE e.tenant_id = :tenant_id AND e.kind = 'partner' AND es.subscriber_id = :subscriber_id
 ORDER BY e.id;

-- name: insert_receipt(tenant_id, subscriber_id, data_request_id, erased_at, erased_by, removed, partner_exports)^
INSERT INTO erasure_receipts (tenant_id, subscriber_id, data_request_id, erased_at, erased_by,
                              removed, partner_exports)
VALUES (:tenant_id, :subscriber_id, :data_request_id, :erased_at, :erased_by, :removed,
        :partner_exports)
RETURNING *;

-- name: receipt_of(tenant_id, subscriber_id)^
SELECT * FROM erasure_receipts
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id ORDER BY id LIMIT 1;

-- name: active_subscriber_batch(tenant_id, after_id, lim)
SELECT id, email, email_key FROM subscribers
 WHERE tenant_id = :tenant_id AND status = 'active' AND id > :after_id
 ORDER BY id LIMIT :lim;

-- name: stale_unconfirmed(tenant_id, before, lim)
-- Sign-ups never confirmed: every subscription still pending, the newest older than :before.
SELECT s.id, s.email, s.email_key FROM subscribers s
 WHERE s.tenant_id = :tenant_id AND s.status = 'active'
   AND EXISTS (SELECT 1 FROM subscriptions p WHERE p.subscriber_id = s.id)
   AND NOT EXISTS (SELECT 1 FROM subscriptions p
                    WHERE p.subscriber_id = s.id
                      AND (p.state <> 'pending' OR p.created_at >= :before))
 ORDER BY s.id LIMIT :lim;

-- name: purge_tenant_leftovers(tenant_id, now)^
-- What a tenant purge clears beyond its people: evidence and inbound mail not tied to a
-- subscriber, every delivery's address, request and import texts.
WITH ev AS (
    UPDATE consent_evidence SET ip = NULL, user_agent = NULL, form_text = NULL,
           message_id = NULL, detail = '{}', erased_at = coalesce(erased_at, :now)
     WHERE tenant_id = :tenant_id
       AND (ip IS NOT NULL OR user_agent IS NOT NULL OR form_text IS NOT NULL
            OR message_id IS NOT NULL OR detail <> '{}')
    RETURNING 1),
ib AS (
    UPDATE inbound_events SET raw = NULL, raw_expires_at = NULL, envelope_from = NULL,
           envelope_rcpt = NULL, parsed = '{}'
     WHERE tenant_id = :tenant_id
       AND (raw IS NOT NULL OR envelope_from IS NOT NULL OR envelope_rcpt IS NOT NULL
            OR parsed <> '{}')
    RETURNING 1),
dl AS (
    UPDATE deliveries SET recipient = NULL, payload = '{}', last_reply = NULL,
           state = CASE WHEN state IN ('queued', 'deferred') THEN 'cancelled' ELSE state END
     WHERE tenant_id = :tenant_id AND state <> 'sending'
       AND (recipient IS NOT NULL OR payload <> '{}' OR last_reply IS NOT NULL
            OR state IN ('queued', 'deferred'))
    RETURNING 1),
rq AS (
    UPDATE data_requests SET requester = NULL, detail = '{}'
     WHERE tenant_id = :tenant_id AND (requester IS NOT NULL OR detail <> '{}')
    RETURNING 1),
ie AS (
    UPDATE import_errors SET reason = '(purged)'
     WHERE import_id IN (SELECT id FROM imports WHERE tenant_id = :tenant_id)
       AND reason <> '(purged)'
    RETURNING 1),
im AS (
    UPDATE imports SET evidence = NULL WHERE tenant_id = :tenant_id AND evidence IS NOT NULL
    RETURNING 1),
pc AS (
    UPDATE partner_claims SET requester = '(purged)', auth = '{}', sending_host = NULL
     WHERE tenant_id = :tenant_id AND requester <> '(purged)'
    RETURNING 1)
SELECT (SELECT count(*) FROM ev) AS evidence, (SELECT count(*) FROM ib) AS inbound,
       (SELECT count(*) FROM dl) AS deliveries, (SELECT count(*) FROM rq) AS requests,
       (SELECT count(*) FROM ie) AS import_errors, (SELECT count(*) FROM im) AS imports,
       (SELECT count(*) FROM pc) AS partner_claims;

-- name: insert_export(tenant_id, kind, created_by, row_count, detail)$
INSERT INTO exports (tenant_id, kind, created_by, row_count, detail)
VALUES (:tenant_id, :kind, :created_by, :row_count, :detail)
RETURNING id;

-- name: add_export_subscribers(export_id, ids)!
INSERT INTO export_subscribers (export_id, subscriber_id)
SELECT :export_id, unnest(CAST(:ids AS bigint[]));

-- name: partner_consenting(tenant_id)
-- Partner sharing only for those whose consent stands now, whose address was confirmed (a
-- box ticked at sign-up counts once the mailbox confirms: nobody can sign up another's
-- address for sharing), and who are not suppressed at all: an erased, bounced or
-- complaining address, or one that left all marketing (Art. 21(3)), is never handed on.
SELECT s.id, s.email, s.name, s.created_at,
       (SELECT max(e.occurred_at) FROM consent_events e
         WHERE e.subscriber_id = s.id AND e.action = 'partner_grant') AS consent_given_at
  FROM subscribers s
 WHERE s.tenant_id = :tenant_id AND s.status = 'active' AND s.partner_consent
   AND EXISTS (SELECT 1 FROM subscriptions p
                WHERE p.subscriber_id = s.id AND p.confirmed_at IS NOT NULL)
   AND NOT EXISTS (SELECT 1 FROM suppressions x
                    WHERE x.tenant_id = s.tenant_id AND x.address_key = s.email_key)
 ORDER BY s.id;

-- name: tenant_subscribers(tenant_id)
SELECT s.id, s.email, s.name, s.status, s.partner_consent, s.age_attested_at, s.created_at,
       s.erased_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'topic', t.slug, 'state', p.state, 'confirmed_at', p.confirmed_at,
                    'unsubscribed_at', p.unsubscribed_at) ORDER BY t.slug)
                   FROM subscriptions p JOIN topics t ON t.id = p.topic_id
                  WHERE p.subscriber_id = s.id), '[]') AS subscriptions
  FROM subscribers s WHERE s.tenant_id = :tenant_id ORDER BY s.id;

-- name: tenant_consent_events(tenant_id)
SELECT e.id, e.subscriber_id, e.topic_id, e.action, e.effect, e.source, e.occurred_at,
       e.policy_version_id, e.campaign_id, e.lawful_basis,
       host(ev.ip) AS ip, ev.user_agent, ev.form_text, ev.message_id
  FROM consent_events e LEFT JOIN consent_evidence ev ON ev.id = e.evidence_id
 WHERE e.tenant_id = :tenant_id ORDER BY e.id;

-- name: tenant_requests(tenant_id)
SELECT id, subscriber_id, kind, status, received_at, due_at, extended_due_at,
       extension_reason, verified_at, completed_at, completed_by
  FROM data_requests WHERE tenant_id = :tenant_id ORDER BY id;

-- name: tenant_campaigns(tenant_id)
SELECT c.id, c.name, c.subject, c.status, c.topic_id, c.policy_version_id, c.created_at,
       c.finished_at, (SELECT count(*) FROM deliveries d WHERE d.campaign_id = c.id) AS deliveries
  FROM campaigns c WHERE c.tenant_id = :tenant_id ORDER BY c.id;

-- name: tenant_suppression_counts(tenant_id)
SELECT scope, reason, count(*) AS n FROM suppressions
 WHERE tenant_id = :tenant_id GROUP BY scope, reason ORDER BY scope, reason;

-- name: tenant_receipts(tenant_id)
SELECT * FROM erasure_receipts WHERE tenant_id = :tenant_id ORDER BY id;

-- name: verify_requests_of(tenant_id, subscriber_id, now)
-- The person used the link mailed to their address: every request of theirs waiting for that
-- proof is verified (address changes have their own link, to the new mailbox, and are left
-- alone; a rectification staff recorded is verified like any other request).
UPDATE data_requests SET status = 'open', verified_at = :now
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id
   AND status = 'awaiting_verification' AND NOT (kind = 'rectify' AND detail ? 'new_email')
RETURNING id, kind;
