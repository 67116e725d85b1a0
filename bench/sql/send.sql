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

-- name: settle_seeded#
-- What autovacuum has long done to a list that exists before its campaign: hint bits set
-- (with data checksums, each page's first setting writes a full-page image to WAL),
-- visibility map and statistics. Without it the enqueue, which runs first, paid that for
-- every page of subscribers and subscriptions, and the bare insert after it did not.
VACUUM (ANALYZE) subscribers, subscriptions;

-- name: sent_count(campaign_id)$
SELECT count(*) FROM deliveries WHERE campaign_id = :campaign_id AND state = 'sent';

-- name: bare_table#
-- The enqueue's baseline: a table shaped like deliveries (columns, defaults, identity,
-- indexes, checks) without foreign keys or the counter triggers.
DROP TABLE IF EXISTS bench_bare;
CREATE TABLE bench_bare (LIKE deliveries INCLUDING ALL);

-- name: bare_insert(campaign_id)!
-- The same rows the enqueue writes, without its consent and suppression tests.
INSERT INTO bench_bare (tenant_id, kind, campaign_id, subscriber_id, priority)
SELECT c.tenant_id, 'campaign', c.id, s.subscriber_id, c.priority
  FROM campaigns c JOIN subscriptions s ON s.topic_id = c.topic_id AND s.state = 'confirmed'
 WHERE c.id = :campaign_id;

-- name: drop_bare#
DROP TABLE IF EXISTS bench_bare;

-- name: delivery_bytes()^
-- What Postgres holds for the outbox: heap, TOAST and every index, and the counter rows.
SELECT pg_total_relation_size('deliveries') AS total,
       pg_relation_size('deliveries') AS heap,
       (SELECT count(*) FROM deliveries) AS rows,
       pg_total_relation_size('campaign_counts') AS counters;

-- name: backend_pid()$
-- The backend's process, for its CPU time when the server runs on this machine.
SELECT pg_backend_pid();
