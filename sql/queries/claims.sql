-- Partner-withdrawal claims from unknown senders (mailer/inbound/claims.py).

-- name: lock_tenant_claims(tenant_id)!
-- Serialises claim intake per tenant, so two messages cannot both pass a rate limit that
-- only one of them fits under (the lock ends with the transaction). 14 is this lock's class.
SELECT pg_advisory_xact_lock(14, CAST(:tenant_id AS integer));

-- name: get_claim(tenant_id, requester_key)^
SELECT * FROM partner_claims
 WHERE tenant_id = :tenant_id AND requester_key = :requester_key
   FOR UPDATE;

-- name: recent_claims(tenant_id, sending_host, since)^
-- Uses partner_claims_tenant_time and partner_claims_host_time. The host count spans every
-- tenant: one sending host flooding many tenants is one flood.
SELECT (SELECT count(*) FROM partner_claims
         WHERE tenant_id = :tenant_id AND first_at >= :since) AS tenant_claims,
       (SELECT count(*) FROM partner_claims
         WHERE sending_host = :sending_host AND first_at >= :since) AS host_claims;

-- name: insert_claim(tenant_id, requester, requester_key, sending_host, authenticated, auth, status, at)^
INSERT INTO partner_claims (tenant_id, requester, requester_key, sending_host, authenticated,
                            auth, status, first_at, last_at)
VALUES (:tenant_id, :requester, :requester_key, :sending_host, :authenticated, :auth,
        :status, :at, :at)
RETURNING *;

-- name: repeat_claim(id, authenticated, auth, at)^
-- The same sender again: counted on the one claim; a first authenticated repeat upgrades a
-- listed claim so it can be confirmed.
UPDATE partner_claims
   SET claims = claims + 1, last_at = :at,
       authenticated = authenticated OR :authenticated,
       auth = CASE WHEN :authenticated AND NOT authenticated THEN :auth ELSE auth END,
       status = CASE WHEN status = 'listed' AND :authenticated
                     THEN 'awaiting_confirmation' ELSE status END
 WHERE id = :id
RETURNING *;

-- name: mark_confirmation_sent(id, at)!
UPDATE partner_claims SET confirmation_sent_at = :at WHERE id = :id;

-- name: confirm_claim(tenant_id, id, data_request_id)^
UPDATE partner_claims SET status = 'confirmed', data_request_id = :data_request_id
 WHERE tenant_id = :tenant_id AND id = :id AND status = 'awaiting_confirmation'
RETURNING *;

-- name: get_claim_by_id(tenant_id, id)^
SELECT * FROM partner_claims WHERE tenant_id = :tenant_id AND id = :id;

-- name: list_claims(tenant_id)
-- For staff: every claim, unconfirmed ones included (they carry no deadline).
SELECT id, tenant_id, requester, sending_host, authenticated, status, claims, first_at,
       last_at, confirmation_sent_at, data_request_id
  FROM partner_claims WHERE tenant_id = :tenant_id ORDER BY id;
