-- API tokens (mailer/api_tokens.py): only the SHA-256 of a token is stored.

-- name: create_token(tenant_id, role, token_hash, label, expires_at, created_by)^
INSERT INTO api_tokens (tenant_id, role, token_hash, label, expires_at, created_by)
VALUES (:tenant_id, :role, :token_hash, :label, :expires_at, :created_by)
RETURNING id, tenant_id, role, label, created_at, expires_at;

-- name: token_by_hash(token_hash)^
-- The unique index on token_hash makes this one probe; expiry is judged by the database
-- clock so every web process agrees on it.
SELECT id, tenant_id, role, label, revoked_at,
       (expires_at IS NOT NULL AND expires_at <= now()) AS expired
  FROM api_tokens WHERE token_hash = :token_hash;

-- name: touch_token(id)!
-- At most one write a minute per token, so a busy client does not turn every read into a write.
UPDATE api_tokens SET last_used_at = now()
 WHERE id = :id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- name: list_tokens(tenant_id)
-- A NULL tenant lists every token (admin tokens have none).
SELECT t.id, t.role, t.label, n.slug AS tenant, t.created_at, t.expires_at, t.revoked_at,
       t.last_used_at
  FROM api_tokens t LEFT JOIN tenants n ON n.id = t.tenant_id
 WHERE (CAST(:tenant_id AS bigint) IS NULL OR t.tenant_id = :tenant_id)
 ORDER BY t.id;

-- name: expire_token(id, at)^
-- Expiry only ever moves earlier: an expired token cannot be brought back this way.
UPDATE api_tokens SET expires_at = LEAST(COALESCE(expires_at, :at), :at)
 WHERE id = :id
RETURNING id, tenant_id, expires_at;

-- name: revoke_token(id)^
-- Idempotent: revoking twice keeps the first time.
UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now())
 WHERE id = :id
RETURNING id, tenant_id, revoked_at;
