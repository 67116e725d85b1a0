-- Reads of the public pages (unsubscribe_web): landing page, preference centre, sign-up form.
-- Every state change goes through mailer.consent; the only write here is the subscriber's
-- own name (profile data, not consent state).

-- name: landing_context(tenant_id, subscriber_id, topic_id)^
-- One round trip for the landing page: tenant, topic, person and subscription together.
-- LEFT JOINs: an erased person or a missing subscription still shows the page (no leak).
SELECT t.name AS tenant_name, t.sender_name, tp.name AS topic_name, tp.kind AS topic_kind,
       s.email, s.status AS subscriber_status, sub.state,
       COALESCE(s.language, t.default_language) AS language,
       t.postal_address, t.contact_web, t.contact_email, t.contact_phone
  FROM tenants t
  JOIN topics tp ON tp.tenant_id = t.id AND tp.id = :topic_id
  LEFT JOIN subscribers s ON s.tenant_id = t.id AND s.id = :subscriber_id
  LEFT JOIN subscriptions sub ON sub.subscriber_id = s.id AND sub.topic_id = tp.id
 WHERE t.id = :tenant_id;

-- name: preference_person(tenant_id, subscriber_id)^
SELECT t.name AS tenant_name, t.sender_name, s.email, s.name, s.status, s.partner_consent,
       COALESCE(s.language, t.default_language) AS language,
       t.postal_address, t.contact_web, t.contact_email, t.contact_phone
  FROM tenants t JOIN subscribers s ON s.tenant_id = t.id
 WHERE t.id = :tenant_id AND s.id = :subscriber_id;

-- name: preference_topics(tenant_id, subscriber_id)
-- Every topic of the tenant, joined or not, so the person can also join one.
SELECT tp.id, tp.slug, tp.name, tp.description, tp.kind, sub.state
  FROM topics tp
  LEFT JOIN subscriptions sub ON sub.topic_id = tp.id AND sub.subscriber_id = :subscriber_id
 WHERE tp.tenant_id = :tenant_id
 ORDER BY tp.kind, tp.name, tp.id;

-- name: set_subscriber_name(tenant_id, subscriber_id, name)^
-- The name is profile data, not consent: it has no ledger row. IS DISTINCT FROM keeps a
-- repeat from touching updated_at.
UPDATE subscribers SET name = :name, updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :subscriber_id AND status = 'active'
   AND name IS DISTINCT FROM :name
RETURNING id;

-- name: signup_context(tenant_slug, topic_slug)^
-- The sign-up form: tenant, topic and the policy version in force, in one round trip.
SELECT t.id AS tenant_id, t.name AS tenant_name, t.sender_name, t.minimum_age,
       t.default_language,
       -- The page's footer: who runs the list and how to reach them (STANDARDS 42).
       t.postal_address, t.contact_web, t.contact_email, t.contact_phone,
       tp.id AS topic_id, tp.name AS topic_name, tp.description AS topic_description,
       (SELECT pv.version FROM policy_versions pv
         WHERE pv.tenant_id = t.id AND pv.effective_at <= now()
         ORDER BY pv.effective_at DESC, pv.id DESC LIMIT 1) AS policy_version
  FROM tenants t JOIN topics tp ON tp.tenant_id = t.id AND tp.slug = :topic_slug
 WHERE t.slug = :tenant_slug;

-- name: confirm_context(tenant_id, subscriber_id, topic_id)^
SELECT t.sender_name, tp.name AS topic_name, s.email, sub.state,
       COALESCE(s.language, t.default_language) AS language
  FROM tenants t
  JOIN topics tp ON tp.tenant_id = t.id AND tp.id = :topic_id
  JOIN subscribers s ON s.tenant_id = t.id AND s.id = :subscriber_id AND s.status = 'active'
  LEFT JOIN subscriptions sub ON sub.subscriber_id = s.id AND sub.topic_id = tp.id
 WHERE t.id = :tenant_id;

-- name: ping()$
SELECT 1;

-- name: set_subscriber_language(tenant_id, subscriber_id, language)!
-- The language of the sign-up form the person used: their pages and mail follow it. Profile
-- data, not consent: no ledger row.
UPDATE subscribers SET language = :language
 WHERE tenant_id = :tenant_id AND id = :subscriber_id;

-- name: reader_language(tenant_id, subscriber_id)$
-- The language of a person's pages: their own, else their tenant's default. LEFT JOIN: an
-- erased person's pages still come in the tenant's language.
SELECT COALESCE(s.language, t.default_language)
  FROM tenants t LEFT JOIN subscribers s ON s.tenant_id = t.id AND s.id = :subscriber_id
 WHERE t.id = :tenant_id;
