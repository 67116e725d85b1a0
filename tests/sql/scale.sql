-- Seeds and probes of the scale tests (issue 20): plans on big tables, counters, retention.

-- name: seed_people(tenant_id, topic_id, n)!
-- :n confirmed subscribers with a ledger row each, by generate_series.
WITH p AS (
    INSERT INTO subscribers (tenant_id, email, email_key)
    SELECT :tenant_id, 'p' || g || '@example.org', sha256(('p' || g)::bytea)
      FROM generate_series(1, :n) AS g
    RETURNING id
), s AS (
    INSERT INTO subscriptions (tenant_id, subscriber_id, topic_id, state, confirmed_at)
    SELECT :tenant_id, id, :topic_id, 'confirmed', now() FROM p
    RETURNING subscriber_id
)
INSERT INTO consent_events (tenant_id, subscriber_id, topic_id, action, effect, source)
SELECT :tenant_id, subscriber_id, :topic_id, 'confirm', 'grant', 'double_opt_in' FROM s;

-- name: seed_deliveries(tenant_id, campaign_id, topic_id)!
-- One delivery per subscriber of the topic: nine in ten sent, the rest queued.
INSERT INTO deliveries (tenant_id, kind, campaign_id, subscriber_id, state, sent_at)
SELECT :tenant_id, 'campaign', :campaign_id, s.subscriber_id,
       CASE WHEN s.subscriber_id % 10 = 0 THEN 'queued' ELSE 'sent' END,
       CASE WHEN s.subscriber_id % 10 = 0 THEN NULL ELSE now() END
  FROM subscriptions s WHERE s.topic_id = :topic_id;

-- name: set_campaign_sending(id)!
UPDATE campaigns SET status = 'sending', started_at = now() - interval '1 hour' WHERE id = :id;

-- name: analyze_all()!
ANALYZE;

-- name: some_delivery_ids(campaign_id, lim)
SELECT id FROM deliveries WHERE campaign_id = :campaign_id ORDER BY id LIMIT :lim;

-- name: deliveries_of(campaign_id)$
SELECT count(*) FROM deliveries WHERE campaign_id = :campaign_id;

-- name: age_campaign(id, days)!
-- The campaign finished :days ago, its mail and the events about it as old.
WITH c AS (
    UPDATE campaigns SET finished_at = now() - make_interval(days => :days) WHERE id = :id
    RETURNING id
), d AS (
    UPDATE deliveries SET updated_at = now() - make_interval(days => :days),
                          sent_at = sent_at - make_interval(days => :days)
     WHERE campaign_id = :id
    RETURNING id
)
UPDATE inbound_events SET received_at = now() - make_interval(days => :days)
 WHERE delivery_id IN (SELECT id FROM d);

-- name: counter_rows(campaign_id)$
SELECT count(*) FROM campaign_counts WHERE campaign_id = :campaign_id;

-- name: inbound_of(campaign_id)$
SELECT count(*) FROM inbound_events i JOIN deliveries d ON d.id = i.delivery_id
 WHERE d.campaign_id = :campaign_id;

-- name: open_request(tenant_id, subscriber_id)!
INSERT INTO data_requests (tenant_id, subscriber_id, kind, status, due_at)
VALUES (:tenant_id, :subscriber_id, 'access', 'open', now() + interval '30 days');

-- name: deliveries_of_subscriber(subscriber_id)$
SELECT count(*) FROM deliveries WHERE subscriber_id = :subscriber_id;

-- name: notice_proof_rows(tenant_id)$
SELECT count(*) FROM notice_proofs WHERE tenant_id = :tenant_id;

-- name: add_complaint(tenant_id, subscriber_id, delivery_id)!
INSERT INTO inbound_events (tenant_id, kind, subscriber_id, delivery_id, parsed)
VALUES (:tenant_id, 'complaint', :subscriber_id, :delivery_id, '{}');

-- name: add_late_bounce(tenant_id, delivery_id)!
-- A permanent bounce is final too (bounce_events_permanent_is_final, migration 0020).
INSERT INTO bounce_events (tenant_id, address_key, delivery_id, status, permanent, final, source)
VALUES (:tenant_id, sha256(('late' || CAST(:delivery_id AS bigint))::bytea),
        CAST(:delivery_id AS bigint), '5.1.1', true, true, 'dsn');

-- name: first_deliveries(campaign_id, lim)
SELECT id, subscriber_id FROM deliveries WHERE campaign_id = :campaign_id ORDER BY id LIMIT :lim;

-- name: add_unmatched(days)!
INSERT INTO inbound_events (kind, received_at, parsed)
VALUES ('unmatched', now() - make_interval(days => :days), '{}');

-- name: unmatched_ages()
SELECT (now() - received_at) > interval '300 days' AS old FROM inbound_events
 WHERE tenant_id IS NULL ORDER BY received_at;

-- name: insert_deliveries(tenant_id, campaign_ids, subscriber_ids)$
-- Campaign deliveries written by hand, as a bulk statement would (the references are checked
-- per statement, migration 0151).
WITH ins AS (
    INSERT INTO deliveries (tenant_id, kind, campaign_id, subscriber_id)
    SELECT :tenant_id, 'campaign', c, s
      FROM unnest(:campaign_ids::bigint[], :subscriber_ids::bigint[]) AS u(c, s)
    RETURNING 1
)
SELECT count(*) FROM ins;

-- name: move_delivery(id, subscriber_id)!
UPDATE deliveries SET subscriber_id = :subscriber_id WHERE id = :id;

-- name: delete_subscriber(id)!
DELETE FROM subscribers WHERE id = :id;

-- name: delete_campaign(id)!
DELETE FROM campaigns WHERE id = :id;

-- name: rekey_subscriber(id, tenant_id)!
UPDATE subscribers SET tenant_id = :tenant_id WHERE id = :id;

-- name: deliveries_of_tenant(tenant_id)$
SELECT count(*) FROM deliveries WHERE tenant_id = :tenant_id;

-- name: bare_subscriber(tenant_id)$
-- An erased person with no subscription, ledger or address row: only deliveries name them.
INSERT INTO subscribers (tenant_id, status, erased_at) VALUES (:tenant_id, 'erased', now())
RETURNING id;
