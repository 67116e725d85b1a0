-- Reads of the admin API (unsubscribe_web/api.py). Every query filters by tenant first
-- (DESIGN invariant 5); lists are keyset-paginated on a unique key, never OFFSET.

-- name: list_subscribers(tenant_id, after_id, lim)
-- Walks the subscribers_tenant_created index (tenant_id, id).
SELECT id, email, name, status, partner_consent, age_attested_at, created_at, erased_at
  FROM subscribers
 WHERE tenant_id = :tenant_id AND id > :after_id
 ORDER BY id LIMIT :lim;

-- name: list_topic_subscribers(tenant_id, topic_id, state, after_id, lim)
-- Walks subscriptions_topic_state (topic_id, state, subscriber_id) when a state is given;
-- the tenant filter on both tables keeps another tenant's rows out whatever the topic id.
SELECT s.id, s.email, s.name, s.status, s.partner_consent, s.age_attested_at, s.created_at,
       s.erased_at, sub.state
  FROM subscriptions sub
  JOIN subscribers s ON s.id = sub.subscriber_id AND s.tenant_id = sub.tenant_id
 WHERE sub.tenant_id = :tenant_id AND sub.topic_id = :topic_id
   AND (CAST(:state AS text) IS NULL OR sub.state = :state)
   AND sub.subscriber_id > :after_id
 ORDER BY sub.subscriber_id LIMIT :lim;

-- name: consent_history(tenant_id, subscriber_id)
-- The consent proof of one person: every ledger row with its evidence (erased evidence shows
-- as erased) and the policy version in force when it was written.
SELECT e.id, e.occurred_at, e.action, e.effect, e.source, e.actor, e.lawful_basis, e.campaign_id,
       e.topic_id, t.slug AS topic, p.version AS policy_version,
       ev.id AS evidence_id, ev.ip, ev.user_agent, ev.form_text, ev.message_id, ev.detail,
       ev.erased_at AS evidence_erased_at
  FROM consent_events e
  LEFT JOIN topics t ON t.id = e.topic_id
  LEFT JOIN policy_versions p ON p.id = e.policy_version_id
  LEFT JOIN consent_evidence ev ON ev.id = e.evidence_id
 WHERE e.tenant_id = :tenant_id AND e.subscriber_id = :subscriber_id
 ORDER BY e.id;
