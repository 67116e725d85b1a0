-- Probes for the inbound and webhook tests only (never loaded by the application).

-- name: insert_campaign(tenant_id, topic_id, status)$
INSERT INTO campaigns (tenant_id, topic_id, name, template, subject, status, started_at)
VALUES (:tenant_id, :topic_id, 'June news', 'newsletter', 'June news', :status, now())
RETURNING id;

-- name: insert_delivery(tenant_id, campaign_id, subscriber_id, message_id)$
INSERT INTO deliveries (tenant_id, kind, campaign_id, subscriber_id, state, sent_at, message_id)
VALUES (:tenant_id, 'campaign', :campaign_id, :subscriber_id, 'sent', now(), :message_id)
RETURNING id;

-- name: insert_sent_deliveries(tenant_id, campaign_id, n)!
-- Filler recipients so a campaign reaches the complaint-rate minimum.
WITH people AS (
    INSERT INTO subscribers (tenant_id, email, email_key)
    SELECT :tenant_id, 'filler' || g || '@filler.example', sha256(('filler' || g)::bytea)
      FROM generate_series(1, :n) g
    RETURNING id
)
INSERT INTO deliveries (tenant_id, kind, campaign_id, subscriber_id, state, sent_at)
SELECT :tenant_id, 'campaign', :campaign_id, id, 'sent', now() FROM people;

-- name: events()
SELECT id, tenant_id, kind, delivery_id, subscriber_id, envelope_from, envelope_rcpt, parsed,
       raw, raw_expires_at, received_at, outcome
  FROM inbound_events ORDER BY id;

-- name: ledger()
SELECT * FROM consent_events ORDER BY id;

-- name: suppressions()
SELECT tenant_id, address_key, scope, reason, source FROM suppressions ORDER BY created_at;

-- name: bounce_events()
SELECT * FROM bounce_events ORDER BY id;

-- name: data_requests()
SELECT * FROM data_requests ORDER BY id;

-- name: campaign(id)^
SELECT * FROM campaigns WHERE id = :id;

-- name: alerts(campaign_id)
SELECT action, detail FROM audit_log
 WHERE target_type = 'campaign' AND target_id = :campaign_id ORDER BY id;

-- name: subscriptions()
SELECT subscriber_id, topic_id, state FROM subscriptions ORDER BY subscriber_id, topic_id;

-- name: subscriber(id)^
SELECT * FROM subscribers WHERE id = :id;

-- name: delivery_count()$
SELECT count(*) FROM deliveries;

-- name: state_digest()^
-- Everything an inbound message may change, to compare before and after.
SELECT (SELECT count(*) FROM consent_events) AS ledger,
       (SELECT count(*) FROM suppressions) AS suppressions,
       (SELECT count(*) FROM bounce_events) AS bounces,
       (SELECT count(*) FROM data_requests) AS requests,
       (SELECT count(*) FROM deliveries) AS deliveries,
       (SELECT string_agg(state, ',' ORDER BY subscriber_id, topic_id) FROM subscriptions)
           AS subscription_states,
       (SELECT string_agg(partner_consent::text, ',' ORDER BY id) FROM subscribers) AS partner,
       (SELECT string_agg(status, ',' ORDER BY id) FROM campaigns) AS campaigns;

-- name: error_events()$
SELECT count(*) FROM inbound_events WHERE outcome = 'error';

-- name: complaint_counts(campaign_id)$
-- What the campaign's complaint rate counts (the same rule as campaign_feedback_counts).
SELECT count(DISTINCT e.delivery_id) FROM inbound_events e
  JOIN deliveries d ON d.id = e.delivery_id
 WHERE d.campaign_id = :campaign_id AND e.kind = 'complaint' AND e.outcome = 'complaint';

-- name: break_table#
-- Makes every insert into consent_events and bounce_events fail, as a bug or a broken
-- constraint would: the inbound path must then answer 451 for opt-outs and keep the rest.
CREATE FUNCTION optout_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'injected failure on %', TG_TABLE_NAME;
END $$;
CREATE TRIGGER optout_test_fail BEFORE INSERT ON consent_events
    FOR EACH ROW EXECUTE FUNCTION optout_test_fail();
CREATE TRIGGER optout_test_fail BEFORE INSERT ON bounce_events
    FOR EACH ROW EXECUTE FUNCTION optout_test_fail();

-- name: mend_table#
DROP TRIGGER optout_test_fail ON consent_events;
DROP TRIGGER optout_test_fail ON bounce_events;
DROP FUNCTION optout_test_fail();

-- name: event_count()$
SELECT count(*) FROM inbound_events;

-- name: claims()
SELECT * FROM partner_claims ORDER BY id;

-- name: confirmation_deliveries()
SELECT id, recipient, template, payload FROM deliveries
 WHERE kind = 'transactional' AND template = 'confirm_claim' ORDER BY id;

-- name: age_claims(days)!
-- As if every confirmation mail went out :days ago.
UPDATE partner_claims
   SET confirmation_sent_at = confirmation_sent_at - make_interval(days => :days);

-- name: insert_unparsed_bounce(tenant_id, delivery_id, subscriber_id, rcpt, raw, expires)$
-- A bounce as a parser before issue 23 left it: kept, linked to its delivery, unparsed.
INSERT INTO inbound_events (tenant_id, kind, delivery_id, subscriber_id, envelope_from,
                            envelope_rcpt, raw, raw_expires_at, outcome, parsed)
VALUES (:tenant_id, 'bounce', :delivery_id, :subscriber_id, '', :rcpt, :raw, :expires,
        'unparsed', '{"recognised": false}')
RETURNING id;
