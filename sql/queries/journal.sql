-- The consent journal outside the database (mailer/journal.py, mailer/db.py,
-- mailer/rights/journal_reapply.py).

-- name: mark_transaction(token)$
-- Inside the journalled transaction: commits with its events or not at all. Returns the
-- journal's clock, the database's: one clock for every host, and the same instant as the
-- ledger rows of the transaction (now() is the transaction's start).
INSERT INTO journal_transactions (token) VALUES (:token) RETURNING now();

-- name: committed_transactions(tokens)
-- Which of these journalled transactions this database holds (after a restore: the backup's).
SELECT token FROM journal_transactions WHERE token = ANY(CAST(:tokens AS uuid[]));

-- name: record_head(file, last_seq, head_hash)!
-- After the lines are fsynced; never moves a file's head back (flushes may finish in any
-- order across connections). Committed without waiting for the WAL flush (synchronous_commit
-- off for this statement's own transaction only): a head lost in a crash only lags behind
-- the file, which nobody mistakes for a file cut short, and the one-click path no longer
-- pays a second WAL fsync per journal flush. The opt-out itself commits synchronously.
INSERT INTO journal_heads (file, last_seq, head_hash)
SELECT :file, :last_seq, :head_hash
  FROM (SELECT set_config('synchronous_commit', 'off', true)) AS this_transaction_only
ON CONFLICT (file) DO UPDATE
   SET last_seq = excluded.last_seq, head_hash = excluded.head_hash, updated_at = now()
 WHERE journal_heads.last_seq < excluded.last_seq;

-- name: list_heads()
SELECT file, last_seq, head_hash FROM journal_heads ORDER BY file;

-- name: address_keys(tenant_id, subscriber_id)
-- Every address the person had, as keyed hashes (rows kept by triggers, migration 0050).
SELECT address_key FROM subscriber_addresses
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id
 ORDER BY address_key;
