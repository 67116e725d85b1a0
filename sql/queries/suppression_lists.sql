-- Suppression lists (mailer/suppression_lists.py): list/export by keyed hash, record exports.

-- name: list_suppressions(tenant_id, after_key, lim)
-- Keyset pagination on the primary key (tenant_id, address_key): each page is one index
-- range scan, however deep the export goes.
SELECT address_key, scope, reason, source, created_at, updated_at FROM suppressions
 WHERE tenant_id = :tenant_id AND address_key > :after_key
 ORDER BY address_key LIMIT :lim;

-- name: get_suppression(tenant_id, address_key)^
SELECT address_key, scope, reason, source, created_at, updated_at FROM suppressions
 WHERE tenant_id = :tenant_id AND address_key = :address_key;

-- name: count_suppressions(tenant_id)$
SELECT count(*) FROM suppressions WHERE tenant_id = :tenant_id;

-- name: record_export(tenant_id, kind, created_by, row_count, detail)$
INSERT INTO exports (tenant_id, kind, created_by, row_count, detail)
VALUES (:tenant_id, :kind, :created_by, :row_count, :detail)
RETURNING id;
