-- Issue 22: the event outbox, the tenant's own id for a person, webhook endpoints and their
-- deliveries. Events never hold an address, a name or an IP (docs/webhooks.md).

-- The tenant's own id for the person (their CRM's), unique per tenant where set; cleared by
-- erasure after the `erased` event is written.
ALTER TABLE subscribers ADD COLUMN external_id text
    CHECK (external_id IS NULL OR length(external_id) BETWEEN 1 AND 200);
CREATE UNIQUE INDEX subscribers_tenant_external_id ON subscribers (tenant_id, external_id)
    WHERE external_id IS NOT NULL;

-- The outbox. `xid` is the writing transaction's id: the change feed publishes only events
-- whose transaction is older than the oldest one still running, and orders by (xid, id), so
-- a transaction that commits late can never land behind a cursor already handed out.
CREATE TABLE events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid            xid8 NOT NULL DEFAULT pg_current_xact_id(),
    tenant_id      bigint NOT NULL REFERENCES tenants (id),
    type           text NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
    version        integer NOT NULL DEFAULT 1,
    subscriber_id  bigint,
    external_id    text,
    campaign_id    bigint,
    data           jsonb NOT NULL DEFAULT '{}',
    occurred_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_tenant_feed ON events (tenant_id, xid, id);
CREATE INDEX events_occurred ON events (occurred_at);
CREATE INDEX events_tenant_subscriber ON events (tenant_id, subscriber_id) WHERE subscriber_id IS NOT NULL;

CREATE TABLE event_endpoints (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id           bigint NOT NULL REFERENCES tenants (id),
    url                 text NOT NULL CHECK (length(url) BETWEEN 8 AND 2000),
    -- Empty: every type.
    event_types         text[] NOT NULL DEFAULT '{}',
    include_address     boolean NOT NULL DEFAULT false,
    -- AES-GCM under a key derived from OPTOUT_HASH_KEY (mailer/secret_box.py): nonce || ct.
    secret_sealed       bytea NOT NULL,
    -- After a rotation the old secret signs too, until old_secret_until.
    old_secret_sealed   bytea,
    old_secret_until    timestamptz,
    active              boolean NOT NULL DEFAULT true,
    failing_since       timestamptz,
    failing_reported_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);

-- One row per (endpoint, event): the delivery's state machine. Written in the event's own
-- transaction by the trigger below, so a committed event is always queued for its endpoints.
CREATE TABLE event_deliveries (
    endpoint_id      bigint NOT NULL REFERENCES event_endpoints (id) ON DELETE CASCADE,
    event_id         bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    tenant_id        bigint NOT NULL,
    -- A subscriber's later events wait behind an earlier pending one (NULL: nobody waits).
    subscriber_id    bigint,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'abandoned')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_at, event_id)
    WHERE state = 'pending';
CREATE INDEX event_deliveries_order ON event_deliveries (endpoint_id, subscriber_id, event_id)
    WHERE state = 'pending';

-- The delivery log: status, latency, error class; never a request or response body.
CREATE TABLE event_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id  bigint NOT NULL REFERENCES event_endpoints (id) ON DELETE CASCADE,
    event_id     bigint,
    tenant_id    bigint NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    status       integer,
    latency_ms   integer,
    error        text CHECK (error IS NULL OR length(error) <= 100)
);
CREATE INDEX event_attempts_endpoint ON event_attempts (endpoint_id, at DESC);

-- Fan-out: every new event is queued for the tenant's active endpoints that take its type,
-- set-based and inside the statement that wrote the events.
CREATE FUNCTION events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_deliveries (endpoint_id, event_id, tenant_id, subscriber_id)
    SELECT p.id, e.id, e.tenant_id, e.subscriber_id
      FROM new_events e
      JOIN event_endpoints p ON p.tenant_id = e.tenant_id AND p.active
     WHERE cardinality(p.event_types) = 0 OR e.type = ANY (p.event_types);
    RETURN NULL;
END $$;
CREATE TRIGGER events_fan_out AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION events_fan_out();

-- Consent changes: the ledger (consent_events) is already written by the consent writer in
-- the transaction of every change, including the one-click single statement and the
-- set-based imports; each ledger row becomes its event in the same statement, set-based.
CREATE FUNCTION consent_events_to_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (tenant_id, type, subscriber_id, external_id, campaign_id, data, occurred_at)
    SELECT c.tenant_id,
           CASE c.action
               WHEN 'subscribe' THEN 'subscriber.subscribed'
               WHEN 'resubscribe' THEN 'subscriber.subscribed'
               WHEN 'confirm' THEN 'subscriber.confirmed'
               WHEN 'unsubscribe' THEN 'subscriber.unsubscribed'
               WHEN 'unsubscribe_all' THEN 'subscriber.unsubscribed'
               WHEN 'suppress' THEN 'subscriber.suppressed'
               WHEN 'lift_suppression' THEN 'subscriber.suppression_lifted'
               WHEN 'partner_grant' THEN 'subscriber.partner_consent_granted'
               WHEN 'partner_withdraw' THEN 'subscriber.partner_consent_withdrawn'
               WHEN 'erase' THEN 'subscriber.erased'
           END,
           c.subscriber_id, s.external_id, c.campaign_id,
           jsonb_strip_nulls(jsonb_build_object(
               'topic', t.slug,
               'scope', CASE WHEN c.action = 'unsubscribe_all' THEN 'all_marketing'
                             WHEN c.action = 'unsubscribe' THEN 'topic' END,
               'state', CASE WHEN c.action IN ('subscribe', 'resubscribe')
                             THEN CASE c.effect WHEN 'grant' THEN 'confirmed' ELSE 'pending' END END,
               'channel', c.source,
               'campaign_id', c.campaign_id)),
           c.occurred_at
      FROM new_ledger c
      JOIN subscribers s ON s.tenant_id = c.tenant_id AND s.id = c.subscriber_id
      LEFT JOIN topics t ON t.id = c.topic_id
     WHERE c.action <> 'correct_basis'
     ORDER BY c.id;
    RETURN NULL;
END $$;
CREATE TRIGGER consent_events_to_events AFTER INSERT ON consent_events
    REFERENCING NEW TABLE AS new_ledger FOR EACH STATEMENT
    EXECUTE FUNCTION consent_events_to_events();

-- Campaign state changes, whichever statement makes them (start, schedule, pause, the
-- worker's finish and auto-pause), in that statement.
CREATE FUNCTION campaign_status_to_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (tenant_id, type, campaign_id, data)
    SELECT n.tenant_id, 'campaign.status_changed', n.id,
           jsonb_strip_nulls(jsonb_build_object(
               'from', o.status, 'to', n.status, 'reason', n.pause_reason))
      FROM new_campaigns n JOIN old_campaigns o ON o.id = n.id
     WHERE n.status IS DISTINCT FROM o.status
     ORDER BY n.id;
    RETURN NULL;
END $$;
CREATE TRIGGER campaign_status_to_events AFTER UPDATE ON campaigns
    REFERENCING OLD TABLE AS old_campaigns NEW TABLE AS new_campaigns FOR EACH STATEMENT
    EXECUTE FUNCTION campaign_status_to_events();
