-- A person as staff see them (issue 17, mailer/consent/people.py): the workspace's person page
-- and the admin API. Every query filters by tenant first (DESIGN invariant 5) and reaches the
-- big tables by index only (tests/integration/scale/test_plans.py holds that).

-- name: person_deliveries(tenant_id, subscriber_id, lim)
-- Newest first through deliveries_subscriber (subscriber_id); a person has few rows.
SELECT d.id, d.kind, d.campaign_id, c.name AS campaign, d.template, d.state, d.attempts,
       d.created_at, d.sent_at, d.last_reply_code
  FROM deliveries d
  LEFT JOIN campaigns c ON c.id = d.campaign_id AND c.tenant_id = d.tenant_id
 WHERE d.tenant_id = :tenant_id AND d.subscriber_id = :subscriber_id
 ORDER BY d.id DESC LIMIT :lim;

-- name: person_bounces(tenant_id, address_key, lim)
-- Bounces are kept by keyed address (bounce_events_address), so they outlive a new address.
SELECT id, delivery_id, status, permanent, source, occurred_at
  FROM bounce_events
 WHERE tenant_id = :tenant_id AND address_key = :address_key
 ORDER BY occurred_at DESC, id DESC LIMIT :lim;

-- name: person_requests(tenant_id, subscriber_id)
-- Through data_requests_subscriber (migration 0090).
SELECT id, kind, status, received_at, due_at, extended_due_at, completed_at
  FROM data_requests
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id
 ORDER BY id DESC;
