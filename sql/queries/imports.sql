-- CSV imports of subscribers (mailer/imports.py): progress, bad rows, confirmation mail.

-- name: find_import(tenant_id, topic_id, sha256)^
-- Resuming after a crash finds the import by the file's content hash.
SELECT * FROM imports
 WHERE tenant_id = :tenant_id AND topic_id = :topic_id AND sha256 = :sha256
 ORDER BY id DESC LIMIT 1;

-- name: create_import(tenant_id, topic_id, filename, sha256, lawful_basis, source, existing_consent, evidence, created_by)^
INSERT INTO imports (tenant_id, topic_id, filename, sha256, lawful_basis, source,
                     existing_consent, evidence, created_by)
VALUES (:tenant_id, :topic_id, :filename, :sha256, :lawful_basis, :source,
        :existing_consent, :evidence, :created_by)
RETURNING *;

-- name: try_lock(id)$
-- A session lock, so two processes never run (or resume) one import at once; it goes away
-- with the connection if the process dies. The class id keeps it apart from other locks.
SELECT pg_try_advisory_lock(7305, CAST(:id % 2147483647 AS integer));

-- name: unlock(id)$
SELECT pg_advisory_unlock(7305, CAST(:id % 2147483647 AS integer));

-- name: set_running(id)!
UPDATE imports SET status = 'running', finished_at = NULL WHERE id = :id;

-- name: commit_batch(id, committed_line, imported, skipped, bad)!
-- In the batch's own transaction: the counters and the resume point move with the rows.
UPDATE imports
   SET committed_line = :committed_line,
       rows_imported = rows_imported + :imported,
       rows_skipped = rows_skipped + :skipped,
       rows_bad = rows_bad + :bad
 WHERE id = :id;

-- name: finish_import(id, status)^
UPDATE imports SET status = :status, finished_at = now() WHERE id = :id RETURNING *;

-- name: insert_errors(import_id, lines, reasons)!
INSERT INTO import_errors (import_id, line, reason)
SELECT :import_id, u.line, u.reason
  FROM unnest(CAST(:lines AS bigint[]), CAST(:reasons AS text[])) AS u(line, reason)
ON CONFLICT (import_id, line) DO NOTHING;

-- name: get_import(tenant_id, id)^
SELECT i.*, t.slug AS topic FROM imports i JOIN topics t ON t.id = i.topic_id
 WHERE i.tenant_id = :tenant_id AND i.id = :id;

-- name: list_imports(tenant_id, before_id, lim)
-- Newest first, keyset-paginated on the primary key.
SELECT i.*, t.slug AS topic FROM imports i JOIN topics t ON t.id = i.topic_id
 WHERE i.tenant_id = :tenant_id AND i.id < :before_id
 ORDER BY i.id DESC LIMIT :lim;

-- name: list_errors(import_id, after_line, lim)
SELECT line, reason FROM import_errors
 WHERE import_id = :import_id AND line > :after_line
 ORDER BY line LIMIT :lim;

-- name: enqueue_confirmations(tenant_id, subscriber_ids, recipients, payloads, priority)!
-- The set-based twin of outbox.enqueue_transactional for a batch of imported people: the
-- double opt-in mail, through the same outbox the worker sends from.
INSERT INTO deliveries (tenant_id, kind, subscriber_id, recipient, template, payload, priority)
SELECT :tenant_id, 'transactional', u.subscriber_id, u.recipient, 'confirm',
       CAST(u.payload AS jsonb), :priority
  FROM unnest(CAST(:subscriber_ids AS bigint[]), CAST(:recipients AS text[]),
              CAST(:payloads AS text[])) AS u(subscriber_id, recipient, payload);

-- name: notify_work()$
-- Wakes idle workers once per batch (LISTEN optout_work).
SELECT pg_notify('optout_work', '');

-- name: create_bench_table()!
-- bench/import.py only: the bare table that Postgres COPY fills as the speed baseline.
CREATE TEMPORARY TABLE bench_copy (email text, name text);

-- name: set_lawful_basis(tenant_id, id, lawful_basis)^
-- The import's record states the corrected basis; the ledger keeps both (correct_import_basis).
UPDATE imports SET lawful_basis = :lawful_basis
 WHERE tenant_id = :tenant_id AND id = :id
RETURNING *;

-- name: purge_old_reports(tenant_id, before)$
-- The per-row report is kept 30 days after an import ends (the daily purge-unconfirmed job).
WITH done AS (
    DELETE FROM import_errors
     WHERE import_id IN (SELECT id FROM imports
                          WHERE tenant_id = :tenant_id AND finished_at < :before)
    RETURNING 1)
SELECT count(*) FROM done;
