-- Each tenant's own email templates and their versions (mailer.sending.tenant_templates).

-- name: create_template(tenant_id, name, created_by)^
INSERT INTO email_templates (tenant_id, name, created_by)
VALUES (:tenant_id, :name, :created_by)
RETURNING *;

-- name: add_version(template_id, html, body_text, created_by)^
-- The next number under a lock of the template row, so two saves at once cannot both take
-- the same number (the second waits and takes the next).
WITH locked AS (
    SELECT id FROM email_templates WHERE id = :template_id FOR UPDATE
)
INSERT INTO email_template_versions (template_id, version, html, body_text, created_by)
SELECT locked.id,
       COALESCE((SELECT max(version) FROM email_template_versions
                  WHERE template_id = locked.id), 0) + 1,
       :html, :body_text, :created_by
  FROM locked
RETURNING *;

-- name: list_templates(tenant_id)
SELECT t.id, t.name, t.created_at, t.created_by,
       v.version, v.created_at AS updated_at, v.created_by AS updated_by
  FROM email_templates t
  JOIN LATERAL (SELECT version, created_at, created_by FROM email_template_versions
                 WHERE template_id = t.id ORDER BY version DESC LIMIT 1) v ON true
 WHERE t.tenant_id = :tenant_id
 ORDER BY t.name;

-- name: get_template(tenant_id, id)^
-- Always inside the tenant: another tenant's id reads like one that does not exist.
SELECT * FROM email_templates WHERE tenant_id = :tenant_id AND id = :id;

-- name: get_version(template_id, version)^
SELECT * FROM email_template_versions WHERE template_id = :template_id AND version = :version;

-- name: latest_version(template_id)^
SELECT * FROM email_template_versions
 WHERE template_id = :template_id ORDER BY version DESC LIMIT 1;

-- name: list_versions(template_id)
SELECT version, created_at, created_by, length(html) + length(body_text) AS size
  FROM email_template_versions WHERE template_id = :template_id ORDER BY version DESC;

-- name: tenant_sources(tenant_id)
-- Every template of the tenant at its newest version: what the sandbox's loader may include.
SELECT t.id, t.name, v.version, v.html, v.body_text
  FROM email_templates t
  JOIN LATERAL (SELECT version, html, body_text FROM email_template_versions
                 WHERE template_id = t.id ORDER BY version DESC LIMIT 1) v ON true
 WHERE t.tenant_id = :tenant_id;

-- name: set_campaign_layout(tenant_id, id, layout_id)^
-- The editor's choice of layout: only before the campaign starts (like every other field).
UPDATE campaigns SET layout_id = :layout_id, layout_version = NULL, updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id AND status IN ('draft', 'scheduled')
RETURNING *;

-- name: pin_campaign_layout(id)!
-- At start: the layout's newest version becomes the campaign's for good.
UPDATE campaigns c
   SET layout_version = (SELECT max(version) FROM email_template_versions
                          WHERE template_id = c.layout_id)
 WHERE c.id = :id AND c.layout_id IS NOT NULL AND c.layout_version IS NULL;

-- name: choose_campaign_layout(tenant_id, id, layout_id, layout_version)^
-- The admin API's choice of layout and, optionally, its version (issue 17): a version given
-- here is kept at start (pin_campaign_layout only fills a NULL). Only before the start.
UPDATE campaigns SET layout_id = :layout_id, layout_version = :layout_version, updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id AND status IN ('draft', 'scheduled')
RETURNING *;
