-- The migration runner's bookkeeping (mailer/migrations.py).

-- name: create_table#
CREATE TABLE IF NOT EXISTS schema_migrations (
    name        text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: lock()$
-- A session-level lock: a second `migrate` waits here, then finds nothing left to apply.
SELECT pg_advisory_lock(hashtext('optout:migrate'));

-- name: unlock()$
SELECT pg_advisory_unlock(hashtext('optout:migrate'));

-- name: applied()
SELECT name, checksum, applied_at FROM schema_migrations ORDER BY name;

-- name: record(name, checksum)!
INSERT INTO schema_migrations (name, checksum) VALUES (:name, :checksum);
