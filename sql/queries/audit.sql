-- The audit log (mailer/audit.py): who did what as staff; ids only, never personal data.

-- name: record(actor, token_id, tenant_id, action, target_type, target_id, detail)$
INSERT INTO audit_log (actor, token_id, tenant_id, action, target_type, target_id, detail)
VALUES (:actor, :token_id, :tenant_id, :action, :target_type, :target_id, :detail)
RETURNING id;

-- name: list_entries(tenant_id, before_id, lim)
-- Newest first, keyset-paginated on the primary key (no OFFSET scans). A NULL tenant lists
-- everything, including tenant-less actions such as creating a tenant.
SELECT a.id, a.occurred_at, a.actor, a.token_id, n.slug AS tenant, a.action, a.target_type,
       a.target_id, a.detail
  FROM audit_log a LEFT JOIN tenants n ON n.id = a.tenant_id
 WHERE (CAST(:tenant_id AS bigint) IS NULL OR a.tenant_id = :tenant_id)
   AND a.id < :before_id
 ORDER BY a.id DESC
 LIMIT :lim;
