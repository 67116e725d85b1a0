-- Tenants (the organisations whose lists these are) and their topics.

-- name: create_tenant(slug, name, sender_name, sender_address, sender_domain, postal_address, dkim_selector, dkim_key_path, dkim_ed25519_selector, dkim_ed25519_key_path, partner_address, time_zone, minimum_age, notice_period_days, holidays, limits)^
INSERT INTO tenants (slug, name, sender_name, sender_address, sender_domain, postal_address,
                     dkim_selector, dkim_key_path, dkim_ed25519_selector, dkim_ed25519_key_path,
                     partner_address, time_zone, minimum_age, notice_period_days, holidays,
                     limits)
VALUES (:slug, :name, :sender_name, :sender_address, :sender_domain, :postal_address,
        :dkim_selector, :dkim_key_path, :dkim_ed25519_selector, :dkim_ed25519_key_path,
        :partner_address, :time_zone, :minimum_age, :notice_period_days, :holidays, :limits)
RETURNING *;

-- name: set_contact(id, contact_web, contact_email, contact_phone)^
-- Like set_default_language: a tenant created with contact details gets them in the same
-- transaction, and create_tenant stays valid on a database migrated before 0100.
UPDATE tenants
   SET contact_web = :contact_web, contact_email = :contact_email, contact_phone = :contact_phone
 WHERE id = :id
RETURNING *;

-- name: set_default_language(id, default_language)^
-- Apart from create_tenant, which leaves the column's default ('en'): a tenant created with
-- another language gets it in the same transaction.
UPDATE tenants SET default_language = :default_language, updated_at = now()
 WHERE id = :id
RETURNING *;

-- name: update_tenant(name, sender_name, sender_address, sender_domain, postal_address, contact_web, contact_email, contact_phone, dkim_selector, dkim_key_path, dkim_ed25519_selector, dkim_ed25519_key_path, partner_address, time_zone, minimum_age, notice_period_days, holidays, limits, default_language, id)^
-- Every field is written: the caller merges the changes into the current row first.
UPDATE tenants
   SET name = :name, sender_name = :sender_name, sender_address = :sender_address,
       sender_domain = :sender_domain, postal_address = :postal_address,
       contact_web = :contact_web, contact_email = :contact_email,
       contact_phone = :contact_phone,
       dkim_selector = :dkim_selector, dkim_key_path = :dkim_key_path,
       dkim_ed25519_selector = :dkim_ed25519_selector,
       dkim_ed25519_key_path = :dkim_ed25519_key_path,
       partner_address = :partner_address, time_zone = :time_zone,
       minimum_age = :minimum_age, notice_period_days = :notice_period_days,
       holidays = :holidays, limits = :limits, default_language = :default_language,
       updated_at = now()
 WHERE id = :id
RETURNING *;

-- name: get_tenant_by_slug(slug)^
SELECT * FROM tenants WHERE slug = :slug;

-- name: get_tenant(id)^
SELECT * FROM tenants WHERE id = :id;

-- name: list_tenants()
SELECT * FROM tenants ORDER BY slug;

-- name: create_topic(tenant_id, slug, name, description, kind)^
INSERT INTO topics (tenant_id, slug, name, description, kind)
VALUES (:tenant_id, :slug, :name, :description, :kind)
RETURNING *;

-- name: get_topic_by_slug(tenant_id, slug)^
SELECT * FROM topics WHERE tenant_id = :tenant_id AND slug = :slug;

-- name: get_topic(tenant_id, id)^
SELECT * FROM topics WHERE tenant_id = :tenant_id AND id = :id;

-- name: list_topics(tenant_id)
SELECT * FROM topics WHERE tenant_id = :tenant_id ORDER BY slug;
