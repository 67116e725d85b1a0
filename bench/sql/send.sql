-- Benchmark-only queries (bench/send.py); never loaded by the application.

-- name: bulk_confirmed_subscribers(tenant_id, topic_id, emails, keys)!
-- Confirmed subscribers set-based, without ledger rows: the benchmark measures sending.
WITH s AS (
    INSERT INTO subscribers (tenant_id, email, email_key)
    SELECT :tenant_id, e, k FROM unnest(:emails::text[], :keys::bytea[]) AS u(e, k)
    RETURNING id
)
INSERT INTO subscriptions (tenant_id, subscriber_id, topic_id, state, confirmed_at)
SELECT :tenant_id, id, :topic_id, 'confirmed', now() FROM s;

-- name: sent_count(campaign_id)$
SELECT count(*) FROM deliveries WHERE campaign_id = :campaign_id AND state = 'sent';
