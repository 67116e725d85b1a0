-- The mailer (mailer/campaigns.py, mailer/worker.py): what the campaign statistics read.

-- "Unsubscribed because of this campaign": ledger rows that name the campaign.
CREATE INDEX consent_events_campaign ON consent_events (campaign_id, source)
    WHERE campaign_id IS NOT NULL;

-- Recent withdrawals per subscriber and topic, for attributing one-click and landing-page
-- unsubscribes (whose links carry the topic, not the campaign) to the campaign that was sent.
CREATE INDEX consent_events_subscriber_topic ON consent_events (subscriber_id, topic_id, occurred_at)
    WHERE effect = 'withdraw';
