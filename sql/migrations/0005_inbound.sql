-- Inbound mail and relay webhooks (mailer/inbound.py, unsubscribe_web/hooks.py).

-- A digest of (envelope recipient, raw message): a sending server that retries after a lost
-- or ambiguous reply (451 during an outage, a timeout at COMMIT) is recognised, so the message
-- is applied once. Kept after the raw message itself expires.
ALTER TABLE inbound_events ADD COLUMN dedupe_key bytea
    CHECK (dedupe_key IS NULL OR length(dedupe_key) = 32);
CREATE UNIQUE INDEX inbound_events_dedupe ON inbound_events (dedupe_key)
    WHERE dedupe_key IS NOT NULL;

-- Complaint reports and relay webhooks name the message by its Message-ID.
CREATE INDEX deliveries_message_id ON deliveries (message_id) WHERE message_id IS NOT NULL;

-- Per-campaign complaint and bounce counts join these to deliveries.
CREATE INDEX inbound_events_delivery ON inbound_events (delivery_id, kind)
    WHERE delivery_id IS NOT NULL;
CREATE INDEX bounce_events_delivery ON bounce_events (delivery_id) WHERE delivery_id IS NOT NULL;
