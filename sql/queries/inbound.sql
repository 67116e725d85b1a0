-- Inbound mail and relay webhooks (mailer/inbound.py, mailer/complaints.py,
-- unsubscribe_web/hooks.py): what arrived, what it maps to, what it did.

-- name: list_inbound_tenants()
-- The whole table, cached by the SMTP server to decide RCPT without a round trip (and while
-- Postgres is briefly away: DATA then answers 451).
SELECT id, sender_domain, partner_address, limits FROM tenants ORDER BY id;

-- name: insert_event(tenant_id, kind, envelope_from, envelope_rcpt, raw, raw_expires_at, dedupe_key, received_at)$
-- First statement of the transaction: a retried message hits the dedupe key and is skipped
-- (no row returned) instead of being applied twice.
INSERT INTO inbound_events (tenant_id, kind, envelope_from, envelope_rcpt, raw, raw_expires_at,
                            dedupe_key, received_at)
VALUES (:tenant_id, :kind, :envelope_from, :envelope_rcpt, :raw, :raw_expires_at, :dedupe_key,
        :received_at)
ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
RETURNING id;

-- name: finish_event(id, tenant_id, kind, delivery_id, subscriber_id, parsed, outcome)!
UPDATE inbound_events
   SET tenant_id = :tenant_id, kind = :kind, delivery_id = :delivery_id,
       subscriber_id = :subscriber_id, parsed = :parsed, outcome = :outcome
 WHERE id = :id;

-- name: mark_complaint(id, tenant_id, delivery_id, subscriber_id)!
-- Written before the campaign's rate is computed, so the rate counts this complaint too.
UPDATE inbound_events
   SET tenant_id = :tenant_id, kind = 'complaint', delivery_id = :delivery_id,
       subscriber_id = :subscriber_id, outcome = 'complaint'
 WHERE id = :id;

-- name: get_event(id)^
SELECT * FROM inbound_events WHERE id = :id;

-- name: get_delivery(tenant_id, id)^
-- The delivery a VERP code names, with the address it went to (campaign mail reads it from
-- the subscriber, transactional mail keeps it on the delivery).
SELECT d.id, d.tenant_id, d.kind, d.campaign_id, d.subscriber_id, d.message_id,
       coalesce(d.recipient, s.email) AS address, s.email_key
  FROM deliveries d
  LEFT JOIN subscribers s ON s.tenant_id = d.tenant_id AND s.id = d.subscriber_id
 WHERE d.tenant_id = :tenant_id AND d.id = :id;

-- name: delivery_by_message_id(message_id, tenant_ids)^
-- Uses deliveries_message_id (0005); restricted to the tenants the report can be about.
SELECT d.id, d.tenant_id, d.kind, d.campaign_id, d.subscriber_id, d.message_id,
       coalesce(d.recipient, s.email) AS address, s.email_key
  FROM deliveries d
  LEFT JOIN subscribers s ON s.tenant_id = d.tenant_id AND s.id = d.subscriber_id
 WHERE d.message_id = :message_id AND d.tenant_id = ANY(:tenant_ids)
 ORDER BY d.id DESC
 LIMIT 1;

-- name: latest_topic_delivery(tenant_id, subscriber_id, topic_id)^
-- A complaint that only carries the List-Unsubscribe code names a person and a topic: the
-- complained-about message is taken to be that person's latest campaign mail on the topic.
SELECT d.id, d.tenant_id, d.kind, d.campaign_id, d.subscriber_id, d.message_id,
       s.email AS address, s.email_key
  FROM deliveries d
  JOIN campaigns c ON c.tenant_id = d.tenant_id AND c.id = d.campaign_id
  JOIN subscribers s ON s.tenant_id = d.tenant_id AND s.id = d.subscriber_id
 WHERE d.tenant_id = :tenant_id AND d.subscriber_id = :subscriber_id
   AND c.topic_id = :topic_id AND d.kind = 'campaign'
 ORDER BY d.id DESC
 LIMIT 1;

-- name: insert_partner_request(tenant_id, requester, received_at, detail)$
-- A withdrawal from an address we cannot match: staff must find the person (issue 7 owns the
-- deadline rules; one calendar month, GDPR Art. 12(3), for now).
INSERT INTO data_requests (tenant_id, kind, requester, status, received_at, due_at, detail)
VALUES (:tenant_id, 'partner_withdrawal', :requester, 'open', :received_at::timestamptz,
        :received_at::timestamptz + interval '1 month', :detail)
RETURNING id;

-- name: purge_expired_raw(now, lim)$
-- Bounded batches (inbound_events_raw_expiry): the parsed result and outcome stay.
WITH expired AS (
    SELECT id FROM inbound_events
     WHERE raw IS NOT NULL AND raw_expires_at <= :now
     ORDER BY raw_expires_at
     LIMIT :lim
), purged AS (
    UPDATE inbound_events e SET raw = NULL FROM expired WHERE e.id = expired.id RETURNING 1
)
SELECT count(*) FROM purged;

-- name: campaign_feedback_counts(campaign_id)^
-- Complaint rate = distinct complained deliveries / deliveries handed to a relay. Complaints
-- are rare, so counting the campaign's deliveries (deliveries_campaign_state) per complaint is
-- cheap enough; bounced counts distinct deliveries with a permanent bounce.
SELECT (SELECT count(*) FROM deliveries
         WHERE campaign_id = :campaign_id
           AND (sent_at IS NOT NULL OR state IN ('sent', 'bounced'))) AS delivered,
       (SELECT count(DISTINCT e.delivery_id) FROM inbound_events e
          JOIN deliveries d ON d.id = e.delivery_id
         WHERE d.campaign_id = :campaign_id
           AND e.kind = 'complaint' AND e.outcome = 'complaint') AS complained,
       (SELECT count(DISTINCT b.delivery_id) FROM bounce_events b
          JOIN deliveries d ON d.id = b.delivery_id
         WHERE d.campaign_id = :campaign_id AND b.permanent) AS bounced;

-- name: get_campaign(tenant_id, id)^
SELECT c.id, c.tenant_id, c.status, c.pause_reason, t.limits
  FROM campaigns c JOIN tenants t ON t.id = c.tenant_id
 WHERE c.tenant_id = :tenant_id AND c.id = :id;

-- name: alert_recorded(tenant_id, campaign_id, action)$
SELECT EXISTS (SELECT 1 FROM audit_log
                WHERE tenant_id = :tenant_id AND target_type = 'campaign'
                  AND target_id = :campaign_id AND action = :action);

-- name: record_alert(tenant_id, campaign_id, action, detail)!
-- The alert is kept in the audit log (ids and counts only) so every process and the admin
-- API see it, and so it is raised once per campaign, not on every later complaint.
INSERT INTO audit_log (actor, tenant_id, action, target_type, target_id, detail)
VALUES ('inbound', :tenant_id, :action, 'campaign', :campaign_id, :detail);

-- name: set_address_keys(id, address_keys)!
-- Keyed hashes of the addresses the event names (mailer/inbound/matching.py): erasure looks
-- events up by them (inbound_events_address_keys, migration 0050).
UPDATE inbound_events SET address_keys = :address_keys WHERE id = :id;

-- name: lock_kept_event(id)^
-- A message kept after a failure (outcome 'error'), locked so two reapply runs cannot both
-- apply it; anything already applied is not returned.
SELECT id, envelope_from, envelope_rcpt, raw, received_at
  FROM inbound_events
 WHERE id = :id AND outcome = 'error'
   FOR UPDATE;

-- name: kept_event_ids(lim)
-- What `optout inbound reapply` runs again: kept failures whose raw message is still here.
SELECT id FROM inbound_events
 WHERE outcome = 'error' AND raw IS NOT NULL
 ORDER BY id
 LIMIT :lim;

-- name: lock_unparsed_bounce(id)^
-- A bounce no parser understood, locked so two reapply runs cannot both apply it; one that a
-- later run applied has another outcome and is not returned (inbound_events_unparsed_bounces).
SELECT id, envelope_from, envelope_rcpt, raw, received_at
  FROM inbound_events
 WHERE id = :id AND kind = 'bounce' AND outcome = 'unparsed'
   FOR UPDATE;

-- name: unparsed_bounce_ids(lim)
-- What `optout inbound reapply --unparsed` runs again: unparsed bounces whose raw message is
-- still here (not yet expired or erased), oldest first.
SELECT id FROM inbound_events
 WHERE kind = 'bounce' AND outcome = 'unparsed' AND raw IS NOT NULL
 ORDER BY id
 LIMIT :lim;

-- name: count_unparsed_bounces()$
-- For /metrics: unparsed bounces still kept (inbound_events_unparsed_bounces).
SELECT count(*) FROM inbound_events
 WHERE kind = 'bounce' AND outcome = 'unparsed' AND raw IS NOT NULL;

-- name: count_unparsed_bounces_of_tenant(tenant_id)$
-- For the dashboard: one tenant's unparsed bounces still kept.
SELECT count(*) FROM inbound_events
 WHERE tenant_id = :tenant_id AND kind = 'bounce' AND outcome = 'unparsed' AND raw IS NOT NULL;

-- name: list_unparsed_bounces(tenant_id, lim)
-- The workspace's list for a tenant's staff: newest first, with the raw message to show as
-- escaped text (inbound_events_unparsed_bounces).
SELECT id, delivery_id, received_at, envelope_from, raw, raw_expires_at, parsed
  FROM inbound_events
 WHERE tenant_id = :tenant_id AND kind = 'bounce' AND outcome = 'unparsed' AND raw IS NOT NULL
 ORDER BY id DESC
 LIMIT :lim;
