-- Privacy-policy versions, their public page, notice progress and proof of notice
-- (mailer/policy.py).

-- name: lock_versions(tenant_id)!
-- Two publishes of one tenant at once would pick the same next version number: the tenant
-- row lock serialises them for the length of the publishing transaction.
SELECT id FROM tenants WHERE id = :tenant_id FOR UPDATE;

-- name: latest_version(tenant_id)^
SELECT * FROM policy_versions WHERE tenant_id = :tenant_id ORDER BY version DESC LIMIT 1;

-- name: insert_version(tenant_id, version, body_md, summary, published_at, effective_at, force_reason, published_by)^
INSERT INTO policy_versions (tenant_id, version, body_md, summary, published_at, effective_at,
                             force_reason, published_by)
VALUES (:tenant_id, :version, :body_md, :summary, :published_at, :effective_at,
        :force_reason, :published_by)
RETURNING *;

-- name: list_versions(tenant_id)
SELECT * FROM policy_versions WHERE tenant_id = :tenant_id ORDER BY version DESC;

-- name: get_version(tenant_id, version)^
SELECT * FROM policy_versions WHERE tenant_id = :tenant_id AND version = :version;

-- name: in_effect(tenant_id, now)^
-- The version people are bound by at :now: the newest one whose effective date has come.
SELECT * FROM policy_versions
 WHERE tenant_id = :tenant_id AND published_at <= :now AND effective_at <= :now
 ORDER BY effective_at DESC, version DESC LIMIT 1;

-- name: upcoming(tenant_id, now)^
-- Published but not yet in effect at :now: what the page's prominent notice announces.
SELECT * FROM policy_versions
 WHERE tenant_id = :tenant_id AND published_at <= :now AND effective_at > :now
 ORDER BY effective_at DESC, version DESC LIMIT 1;

-- name: notice_topics(tenant_id)
SELECT * FROM topics WHERE tenant_id = :tenant_id AND kind = 'notice' ORDER BY id;

-- name: notice_progress(tenant_id, policy_version_id)
-- One row per notice campaign of a version, with its deliveries counted by state and the
-- time of the first and last send, from which status estimates the sending rate. Summed
-- from campaign_counts (migration 0060): cheap at any size, and right after retention.
SELECT c.id, c.status, c.created_at,
       COALESCE(sum(k.n), 0)::bigint AS total,
       COALESCE(sum(k.n) FILTER (WHERE k.state = 'sent'), 0)::bigint AS sent,
       COALESCE(sum(k.n) FILTER (WHERE k.state IN ('queued', 'deferred', 'sending')), 0)::bigint
           AS pending,
       COALESCE(sum(k.n) FILTER (WHERE k.state IN ('failed', 'bounced', 'suppressed',
                                                    'cancelled')), 0)::bigint AS not_mailed,
       min(k.first_sent_at) AS first_sent_at,
       max(k.last_sent_at) AS last_sent_at
  FROM campaigns c LEFT JOIN campaign_counts k ON k.campaign_id = c.id
 WHERE c.tenant_id = :tenant_id AND c.policy_version_id = :policy_version_id
 GROUP BY c.id ORDER BY c.id;

-- name: proof_of_notice(tenant_id, policy_version_id)
-- Everyone the notice concerned: each person with a delivery of a notice campaign of the
-- version, and every other person of the tenant, who is covered by the site notice. An erased
-- person stays listed by id only (the address is gone; the delivery proves the sending).
SELECT s.id AS subscriber_id,
       s.email,
       s.status,
       d.id AS delivery_id,
       d.state,
       d.sent_at,
       CASE WHEN d.state = 'sent' THEN 'email' ELSE 'site_notice' END AS notified_by
  FROM subscribers s
  -- Live deliveries, and the proof rows the retention job kept when it removed them.
  LEFT JOIN LATERAL (
        SELECT * FROM (
            SELECT d.id, d.state, d.sent_at FROM deliveries d
              JOIN campaigns c ON c.id = d.campaign_id
             WHERE c.tenant_id = :tenant_id AND c.policy_version_id = :policy_version_id
               AND d.subscriber_id = s.id
            UNION ALL
            SELECT n.delivery_id, n.state, n.sent_at FROM notice_proofs n
             WHERE n.tenant_id = :tenant_id AND n.policy_version_id = :policy_version_id
               AND n.subscriber_id = s.id) AS both_kinds
         ORDER BY (state = 'sent') DESC, id LIMIT 1) d ON true
 WHERE s.tenant_id = :tenant_id
   AND (d.id IS NOT NULL OR s.status = 'active')
 ORDER BY s.id;

-- name: record_audit(actor, tenant_id, action, target_type, target_id, detail)!
INSERT INTO audit_log (actor, tenant_id, action, target_type, target_id, detail)
VALUES (:actor, :tenant_id, :action, :target_type, :target_id, :detail);

-- name: link_campaign(tenant_id, id, policy_version_id)^
-- Marks a campaign as the notice of a policy version (proof of notice reads deliveries by it).
UPDATE campaigns SET policy_version_id = :policy_version_id, updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id
RETURNING *;
