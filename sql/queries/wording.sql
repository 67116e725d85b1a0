-- A tenant's own wording of a few subscriber-facing strings, per language (mailer/wording.py).

-- name: set_wording(tenant_id, key, language, text)^
INSERT INTO tenant_wording (tenant_id, key, language, text)
VALUES (:tenant_id, :key, :language, :text)
ON CONFLICT (tenant_id, key, language) DO UPDATE SET text = EXCLUDED.text, updated_at = now()
RETURNING key, language, text, updated_at;

-- name: clear_wording(tenant_id, key, language)$
WITH gone AS (
    DELETE FROM tenant_wording
     WHERE tenant_id = :tenant_id AND key = :key AND language = :language
    RETURNING 1
)
SELECT count(*) > 0 FROM gone;

-- name: list_wording(tenant_id)
SELECT key, language, text, updated_at FROM tenant_wording
 WHERE tenant_id = :tenant_id ORDER BY key, language;
