-- Benchmark-only queries (bench/events.py); never loaded by the application.

-- name: seed_events(tenant_id, n)$
-- N events of N people (ids only: events hold no address), queued for the tenant's endpoint
-- by the fan-out trigger as any event is.
WITH done AS (
    INSERT INTO events (tenant_id, type, subscriber_id, data)
    SELECT :tenant_id, 'subscriber.unsubscribed', g,
           jsonb_build_object('topic', 'news', 'scope', 'topic', 'channel', 'one_click')
      FROM generate_series(1, :n) AS g
    RETURNING 1)
SELECT count(*) FROM done;

-- name: delivered(endpoint_id)$
SELECT count(*) FROM event_deliveries WHERE endpoint_id = :endpoint_id AND state = 'delivered';
