-- The staff dashboard (unsubscribe_web/dashboard.py): read-only views of one tenant.
--
-- "An unsubscribe" here is a person's own withdrawal: leaving a topic, all marketing or
-- partner sharing, or a spam complaint (which suppresses them). Bounces and erasures also
-- write withdraw rows, but they are not anyone's opt-out, so they are left out. The same
-- condition is repeated in the three ledger queries below; keep them in step.
-- They read consent_events through consent_events_tenant_time (tenant_id, occurred_at).

-- name: recent_campaigns(tenant_id, lim)
SELECT c.id, c.name, c.status, c.created_at, c.started_at, c.finished_at,
       tp.name AS topic_name, tp.kind AS topic_kind
  FROM campaigns c JOIN topics tp ON tp.tenant_id = c.tenant_id AND tp.id = c.topic_id
 WHERE c.tenant_id = :tenant_id
 ORDER BY c.id DESC
 LIMIT :lim;

-- name: recent_withdrawals(tenant_id, lim)
-- The newest first. The address is masked by the caller; an erased person has none left.
SELECT e.id, e.occurred_at, e.action, e.source, s.email, tp.name AS topic_name
  FROM consent_events e
  JOIN subscribers s ON s.tenant_id = e.tenant_id AND s.id = e.subscriber_id
  LEFT JOIN topics tp ON tp.tenant_id = e.tenant_id AND tp.id = e.topic_id
 WHERE e.tenant_id = :tenant_id
   AND ((e.action IN ('unsubscribe', 'unsubscribe_all', 'partner_withdraw')
         AND e.source <> 'erasure')
        OR (e.action = 'suppress' AND e.source = 'complaint'))
 ORDER BY e.occurred_at DESC, e.id DESC
 LIMIT :lim;

-- name: withdrawals_by_channel(tenant_id, since)
SELECT e.source, count(*) AS n
  FROM consent_events e
 WHERE e.tenant_id = :tenant_id AND e.occurred_at >= :since
   AND ((e.action IN ('unsubscribe', 'unsubscribe_all', 'partner_withdraw')
         AND e.source <> 'erasure')
        OR (e.action = 'suppress' AND e.source = 'complaint'))
 GROUP BY e.source
 ORDER BY n DESC, e.source;

-- name: withdrawals_per_day(tenant_id, now, days)
-- One row per day of the tenant's calendar (its time zone), the last :days days up to the
-- day of :now, zero-filled by generate_series. The ledger is read only from the first
-- local midnight on, so the index range is bounded.
WITH zone AS (
    SELECT time_zone, (CAST(:now AS timestamptz) AT TIME ZONE time_zone)::date AS today
      FROM tenants WHERE id = :tenant_id
), span AS (
    SELECT time_zone, today - (CAST(:days AS integer) - 1) AS first_day, today FROM zone
), counted AS (
    SELECT (e.occurred_at AT TIME ZONE span.time_zone)::date AS day, count(*) AS n
      FROM consent_events e, span
     WHERE e.tenant_id = :tenant_id
       AND e.occurred_at >= (span.first_day::timestamp AT TIME ZONE span.time_zone)
       AND e.occurred_at < ((span.today + 1)::timestamp AT TIME ZONE span.time_zone)
       AND ((e.action IN ('unsubscribe', 'unsubscribe_all', 'partner_withdraw')
             AND e.source <> 'erasure')
            OR (e.action = 'suppress' AND e.source = 'complaint'))
     GROUP BY 1
)
SELECT d.day::date AS day, coalesce(c.n, 0) AS n
  FROM span, generate_series(span.first_day, span.today, interval '1 day') AS d (day)
  LEFT JOIN counted c ON c.day = d.day::date
 ORDER BY d.day;

-- name: sends_per_minute(tenant_id, now, minutes)
-- One row per minute, the last :minutes minutes up to the minute of :now, zero-filled.
-- Every delivery of the tenant with a send time counts (campaign and transactional mail).
-- Summed from send_minutes (migration 0060): the deliveries triggers' per-minute deltas, so
-- an hour of a million-recipient send is a few thousand rows, not every delivery it sent.
WITH span AS (
    SELECT date_trunc('minute', CAST(:now AS timestamptz)) AS last_minute,
           date_trunc('minute', CAST(:now AS timestamptz))
               - make_interval(mins => CAST(:minutes AS integer) - 1) AS first_minute
), counted AS (
    SELECT k.minute, sum(k.n)::bigint AS n
      FROM send_minutes k, span
     WHERE k.tenant_id = :tenant_id
       AND k.minute >= span.first_minute
       AND k.minute <= span.last_minute
     GROUP BY 1
)
SELECT m.minute, coalesce(c.n, 0) AS n
  FROM span, generate_series(span.first_minute, span.last_minute, interval '1 minute') AS m (minute)
  LEFT JOIN counted c ON c.minute = m.minute
 ORDER BY m.minute;
