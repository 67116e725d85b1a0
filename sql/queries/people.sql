-- A person as staff see them (issue 17, mailer/consent/people.py): the workspace's person page
-- and the admin API. Every query filters by tenant first (DESIGN invariant 5) and reaches the
-- big tables by index only (tests/integration/scale/test_plans.py holds that).

-- name: person_activity(tenant_id, subscriber_id, address_key, lim)^
-- The rest of a person's page in one round trip (the page is read often; each part is small):
-- the newest deliveries through deliveries_subscriber (subscriber_id); bounces by keyed
-- address through bounce_events_address, so they outlive a new address; data requests
-- through data_requests_subscriber (migration 0090); the suppression by its primary key.
-- Times come back as UTC text, as the page shows them.
SELECT
    (SELECT coalesce(json_agg(x ORDER BY x.id DESC), '[]')
       FROM (SELECT d.id, d.kind, d.campaign_id, c.name AS campaign, d.template, d.state,
                    d.attempts, d.last_reply_code,
                    to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS created_at,
                    to_char(d.sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS sent_at
               FROM deliveries d
               LEFT JOIN campaigns c ON c.id = d.campaign_id AND c.tenant_id = d.tenant_id
              WHERE d.tenant_id = :tenant_id AND d.subscriber_id = :subscriber_id
              ORDER BY d.id DESC LIMIT :lim) x) AS deliveries,
    (SELECT coalesce(json_agg(x ORDER BY x.occurred_at DESC, x.id DESC), '[]')
       FROM (SELECT id, delivery_id, status, permanent, source, occurred_at,
                    to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS occurred
               FROM bounce_events
              WHERE tenant_id = :tenant_id AND address_key = :address_key
              ORDER BY occurred_at DESC, id DESC LIMIT :lim) x) AS bounces,
    (SELECT coalesce(json_agg(x ORDER BY x.id DESC), '[]')
       FROM (SELECT id, kind, status,
                    to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS received,
                    to_char(coalesce(extended_due_at, due_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS due
               FROM data_requests
              WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id) x) AS requests,
    (SELECT row_to_json(x)
       FROM (SELECT scope, reason,
                    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS since
               FROM suppressions
              WHERE tenant_id = :tenant_id AND address_key = :address_key) x) AS suppression;
