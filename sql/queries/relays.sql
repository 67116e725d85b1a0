-- SMTP relays: a token bucket per relay shared by every worker on every machine.

-- name: ensure_relay(name, per_second, per_hour)!
-- The rates come from each worker's configuration; the last worker started wins, which is
-- what an operator changing the setting and restarting the workers expects.
INSERT INTO relays (name, per_second, per_hour, tokens, tokens_at)
VALUES (:name, :per_second, :per_hour, 0, clock_timestamp())
ON CONFLICT (name) DO UPDATE
   SET per_second = EXCLUDED.per_second, per_hour = EXCLUDED.per_hour, updated_at = now();

-- name: take_tokens(name, want)^
-- One row lock serialises every worker's take; the bucket refills at per_second up to one
-- second's worth (the burst), and the hourly counter caps the rest. clock_timestamp(), not
-- now(): a transaction may be older than the moment of the take.
WITH cur AS (
    SELECT r.name, r.per_second, r.per_hour, clock_timestamp() AS at,
           LEAST(r.per_second,
                 r.tokens + EXTRACT(epoch FROM clock_timestamp() - r.tokens_at) * r.per_second)
               AS available,
           CASE WHEN clock_timestamp() - r.hour_started_at >= interval '1 hour'
                THEN 0 ELSE r.hour_count END AS hour_count,
           CASE WHEN clock_timestamp() - r.hour_started_at >= interval '1 hour'
                THEN clock_timestamp() ELSE r.hour_started_at END AS hour_started_at,
           r.set_aside_until
      FROM relays r WHERE r.name = :name
       FOR UPDATE
), granted AS (
    SELECT cur.*,
           CASE WHEN set_aside_until > at THEN 0
                ELSE GREATEST(0, LEAST(:want, floor(available)::int, per_hour - hour_count))
           END AS n
      FROM cur
)
UPDATE relays r
   SET tokens = g.available - g.n, tokens_at = g.at, hour_count = g.hour_count + g.n,
       hour_started_at = g.hour_started_at, updated_at = g.at
  FROM granted g
 WHERE r.name = g.name
RETURNING g.n AS granted, g.available - g.n AS left_over, g.per_second,
          g.per_hour - g.hour_count - g.n AS hour_left,
          EXTRACT(epoch FROM g.hour_started_at + interval '1 hour' - g.at) AS hour_resets_in,
          EXTRACT(epoch FROM g.set_aside_until - g.at) AS set_aside_for;

-- name: relay_failed(name, after, seconds)$
-- A relay that keeps failing (connection refused, TLS errors) is set aside for a while so the
-- workers stop hammering it; one success clears the count.
UPDATE relays
   SET consecutive_fails = consecutive_fails + 1,
       set_aside_until = CASE WHEN consecutive_fails + 1 >= :after
                              THEN clock_timestamp() + make_interval(secs => :seconds)
                              ELSE set_aside_until END,
       updated_at = now()
 WHERE name = :name
RETURNING consecutive_fails;

-- name: relay_ok(name)!
UPDATE relays SET consecutive_fails = 0, set_aside_until = NULL, updated_at = now()
 WHERE name = :name AND (consecutive_fails <> 0 OR set_aside_until IS NOT NULL);

-- name: get_relay(name)^
SELECT * FROM relays WHERE name = :name;
