-- The single bounce policy (mailer/bounce_policy.py): every bounce signal is recorded here.

-- name: insert_bounce_event(tenant_id, address_key, delivery_id, status, permanent, final, source, occurred_at)$
INSERT INTO bounce_events (tenant_id, address_key, delivery_id, status, permanent, final,
                           source, occurred_at)
VALUES (:tenant_id, :address_key, :delivery_id, :status, :permanent, :final, :source,
        :occurred_at)
RETURNING id;

-- name: recent_permanent_bounces(tenant_id, address_key, since)
-- One row per failed delivery: an SMTP 5xx and the later DSN of the same delivery are one
-- failure, not two; a delivery's hard failure outranks its soft one (ORDER BY permanent DESC).
-- Final failures only (hard, and soft: final with a 4.x.x cause); delays never count.
-- 5.7.x (policy, reputation) is the sender's problem, never the address's.
-- Served by bounce_events_address (tenant_id, address_key, occurred_at).
SELECT DISTINCT ON (COALESCE(delivery_id, -id)) occurred_at, permanent
  FROM bounce_events
 WHERE tenant_id = :tenant_id AND address_key = :address_key AND final
   AND occurred_at >= :since
   AND (status IS NULL OR status NOT LIKE '5.7.%')
 ORDER BY COALESCE(delivery_id, -id), permanent DESC, occurred_at DESC;
