-- The consent journal outside the database (mailer/journal.py, mailer/db.py,
-- mailer/rights/journal_reapply.py).

-- name: transaction_time()$
-- The journal's clock is the database's: one clock for every host, and the same instant as
-- the ledger rows of the transaction (now() is the transaction's start).
SELECT now();

-- name: record_head(file, last_seq, head_hash)!
-- In the journalled transaction itself: commits with the events, or not at all.
INSERT INTO journal_heads (file, last_seq, head_hash) VALUES (:file, :last_seq, :head_hash)
ON CONFLICT (file) DO UPDATE
   SET last_seq = excluded.last_seq, head_hash = excluded.head_hash, updated_at = now();

-- name: list_heads()
SELECT file, last_seq, head_hash FROM journal_heads ORDER BY file;

-- name: address_keys(tenant_id, subscriber_id)
-- Every address the person had, as keyed hashes (rows kept by triggers, migration 0050).
SELECT address_key FROM subscriber_addresses
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id
 ORDER BY address_key;
