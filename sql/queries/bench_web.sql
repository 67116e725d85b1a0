-- bench/web.py only: a big table to unsubscribe from, and the bare baseline's statement.

-- name: seed_subscribers(tenant_id, n)!
-- Set-based: a million rows in one statement. email_key is 32 bytes like the real keyed hash.
INSERT INTO subscribers (tenant_id, email, email_key)
SELECT :tenant_id, 'bench' || g || '@bench.example', sha256(('bench' || g)::bytea)
  FROM generate_series(1, :n) AS g;

-- name: seed_subscriptions(tenant_id, topic_id)!
INSERT INTO subscriptions (tenant_id, subscriber_id, topic_id, state, confirmed_at)
SELECT :tenant_id, id, :topic_id, 'confirmed', now() FROM subscribers WHERE tenant_id = :tenant_id;

-- name: subscriber_ids(tenant_id, n)
SELECT id FROM subscribers WHERE tenant_id = :tenant_id ORDER BY id LIMIT :n;

-- name: count_subscribers(tenant_id)$
SELECT count(*) FROM subscribers WHERE tenant_id = :tenant_id;

-- name: reset_subscriptions(topic_id)$
-- Before each run: everyone subscribed again (the ledger is append-only and keeps growing).
WITH reset AS (
    UPDATE subscriptions SET state = 'confirmed', unsubscribed_at = NULL
     WHERE topic_id = :topic_id AND state = 'unsubscribed'
    RETURNING 1
)
SELECT count(*) FROM reset;

-- name: count_unsubscribed(topic_id)$
SELECT count(*) FROM subscriptions WHERE topic_id = :topic_id AND state = 'unsubscribed';

-- name: vacuum_subscriptions()!
VACUUM ANALYZE subscriptions;

-- name: baseline_unsubscribe(subscriber_id, topic_id)!
-- The baseline: one UPDATE by primary key, as bare as an unsubscribe can be.
UPDATE subscriptions SET state = 'unsubscribed', unsubscribed_at = now(), updated_at = now()
 WHERE subscriber_id = :subscriber_id AND topic_id = :topic_id AND state <> 'unsubscribed';

-- name: backend_pid()$
-- bench.web finds the Postgres server's processes (this backend's parent) to count their CPU.
SELECT pg_backend_pid();

-- name: count_event_deliveries(tenant_id)$
-- With --with-endpoint: the delivery rows the opt-outs queued (the fan-out did its work).
SELECT count(*) FROM event_deliveries WHERE tenant_id = :tenant_id;
