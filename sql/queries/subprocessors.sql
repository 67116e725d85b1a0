-- The sub-processor registers: one per tenant, one for the installation (tenant_id NULL)
-- (mailer/rights/subprocessors.py).

-- name: lock_register(tenant_id)!
-- Two saves of one register at once would interleave their deletes and inserts: a
-- transaction-scoped advisory lock per register (tenant id, 0 for the installation)
-- serialises them.
SELECT pg_advisory_xact_lock(hashtext('subprocessors'), COALESCE(:tenant_id::bigint, 0)::int);

-- name: register(tenant_id)
-- IS NOT DISTINCT FROM: NULL names the installation's register.
SELECT id, tenant_id, position, name, purpose, location, updated_by, updated_at
  FROM subprocessors
 WHERE tenant_id IS NOT DISTINCT FROM :tenant_id::bigint
 ORDER BY position, id;

-- name: clear_register(tenant_id)!
DELETE FROM subprocessors WHERE tenant_id IS NOT DISTINCT FROM :tenant_id::bigint;

-- name: add_entry(tenant_id, position, name, purpose, location, updated_by)!
INSERT INTO subprocessors (tenant_id, position, name, purpose, location, updated_by)
VALUES (:tenant_id, :position, :name, :purpose, :location, :updated_by);
