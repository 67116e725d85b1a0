-- The audit log (mailer/audit.py): who did what as staff; ids only, never personal data.

-- name: record(actor, account_id, token_id, tenant_id, action, target_type, target_id, detail)$
INSERT INTO audit_log (actor, account_id, token_id, tenant_id, action, target_type, target_id,
                       detail)
VALUES (:actor, :account_id, :token_id, :tenant_id, :action, :target_type, :target_id, :detail)
RETURNING id;

-- name: list_entries(tenant_id, account_id, before_id, lim)
-- Newest first, keyset-paginated on the primary key (no OFFSET scans). A NULL tenant lists
-- everything, including tenant-less actions such as creating a tenant. The person is the
-- account that acted, else the creator of the token used; tokens from before accounts have
-- none ("unknown" on the page). A NULL account_id lists everyone.
SELECT a.id, a.occurred_at, a.actor, a.token_id, n.slug AS tenant, a.action, a.target_type,
       a.target_id, a.detail, p.id AS person_id, p.name AS person_name, p.email AS person_email,
       k.label AS token_name
  FROM audit_log a
  LEFT JOIN tenants n ON n.id = a.tenant_id
  LEFT JOIN api_tokens k ON k.id = a.token_id
  LEFT JOIN staff_accounts p ON p.id = COALESCE(a.account_id, k.created_by)
 WHERE (CAST(:tenant_id AS bigint) IS NULL OR a.tenant_id = :tenant_id)
   AND (CAST(:account_id AS bigint) IS NULL OR p.id = :account_id)
   AND a.id < :before_id
 ORDER BY a.id DESC
 LIMIT :lim;
