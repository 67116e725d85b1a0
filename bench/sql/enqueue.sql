-- Benchmark-only queries (bench/enqueue.py); never loaded by the application.

-- name: enqueue_before(campaign_id)$
-- The enqueue as it was before migration 0210: its rows counted through RETURNING in a CTE
-- (stored once more), and the outbox's per-statement subscriber check run over them.
WITH c AS (
    SELECT c.id, c.tenant_id, c.topic_id, c.priority, t.kind
      FROM campaigns c JOIN topics t ON t.id = c.topic_id
     WHERE c.id = :campaign_id
), ins AS (
    INSERT INTO deliveries (tenant_id, kind, campaign_id, subscriber_id, priority)
    SELECT c.tenant_id, 'campaign', c.id, s.subscriber_id, c.priority
      FROM c
      JOIN subscriptions s ON s.topic_id = c.topic_id AND s.state = 'confirmed'
      JOIN subscribers p ON p.id = s.subscriber_id AND p.status = 'active'
     WHERE NOT EXISTS (
            SELECT 1 FROM suppressions x
             WHERE x.tenant_id = c.tenant_id AND x.address_key = p.email_key
               AND (x.scope = 'all' OR c.kind = 'marketing'))
     ORDER BY s.subscriber_id
    RETURNING 1
)
SELECT count(*) FROM ins;

-- name: empty_outbox#
-- Every round starts from an empty outbox, and from a checkpoint so no round pays another's
-- dirty pages.
TRUNCATE deliveries, campaign_counts, send_minutes, bounce_events, inbound_events;
DROP TABLE IF EXISTS bench_bare;
CREATE TABLE bench_bare (LIKE deliveries INCLUDING ALL);
CHECKPOINT;

-- name: outbox_rows()$
SELECT (SELECT count(*) FROM deliveries) + (SELECT count(*) FROM bench_bare);
