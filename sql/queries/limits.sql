-- Rate limits shared by every process (mailer/limits.py): fixed windows in one table.

-- name: hit(name, subject_key, lim, window_seconds)$
-- Count one event and say whether it is within the limit, in one statement: the upsert
-- takes the row's lock, so two processes counting the same subject at once serialise here
-- and neither can slip past the limit. A window that has ended starts again at this event.
-- hits stops at lim + 1: a flood cannot overflow it, and over is over.
INSERT INTO rate_limits AS r (name, subject_key, window_start, window_end, hits)
VALUES (:name, :subject_key, clock_timestamp(),
        clock_timestamp() + make_interval(secs => :window_seconds), 1)
ON CONFLICT (name, subject_key) DO UPDATE
   SET window_start = CASE WHEN r.window_end <= clock_timestamp()
                           THEN excluded.window_start ELSE r.window_start END,
       window_end = CASE WHEN r.window_end <= clock_timestamp()
                         THEN excluded.window_end ELSE r.window_end END,
       hits = CASE WHEN r.window_end <= clock_timestamp()
                   THEN 1 ELSE least(r.hits + 1, :lim + 1) END
RETURNING hits <= :lim;

-- name: purge_expired()$
-- Rows whose window has ended count for nothing; the regular job deletes them (by the
-- rate_limits_window_end index) so the table holds only live windows.
WITH gone AS (
    DELETE FROM rate_limits WHERE window_end <= clock_timestamp() RETURNING 1
)
SELECT count(*) FROM gone;
