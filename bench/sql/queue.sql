-- Benchmark-only queries (bench/queue.py); never loaded by the application.

-- name: seed_people(tenant_id, topic_id, n)!
-- N confirmed subscribers by generate_series (no ledger rows: the benchmark measures the queue).
WITH p AS (
    INSERT INTO subscribers (tenant_id, email, email_key)
    SELECT :tenant_id, 'p' || g || '@example.org', sha256(('p' || g)::bytea)
      FROM generate_series(1, :n) AS g
    RETURNING id
)
INSERT INTO subscriptions (tenant_id, subscriber_id, topic_id, state, confirmed_at)
SELECT :tenant_id, id, :topic_id, 'confirmed', now() FROM p;

-- name: start_campaign(campaign_id)!
UPDATE campaigns SET status = 'sending', started_at = now() WHERE id = :campaign_id;

-- name: claim_half(campaign_id, n)!
-- The first N deliveries claimed, then (record_half) recorded sent: two updates per row, as
-- the worker's claim and result write leave them (dead versions and index entries included).
UPDATE deliveries SET state = 'sending', lease_owner = 'bench-half',
       lease_expires_at = now() + interval '1 minute', attempts = attempts + 1
 WHERE id IN (SELECT id FROM deliveries WHERE campaign_id = :campaign_id
               ORDER BY priority DESC, next_attempt_at, id LIMIT :n);

-- name: record_half()!
UPDATE deliveries SET state = 'sent', lease_owner = NULL, lease_expires_at = NULL,
       sent_at = clock_timestamp()
 WHERE lease_owner = 'bench-half';
