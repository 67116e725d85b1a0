-- Benchmark-only queries (bench/workers.py); never loaded by the application.

-- name: lock_waits(prefix)
-- Backends of the benchmark's workers (told apart by application_name) that wait on a
-- heavyweight lock right now (a row lock held by another worker, a relation lock), and how
-- many backends each has at all (so a sampler that sees none is noticed).
SELECT application_name, count(*) AS backends,
       count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting
  FROM pg_stat_activity
 WHERE application_name LIKE :prefix || '%'
 GROUP BY application_name;
