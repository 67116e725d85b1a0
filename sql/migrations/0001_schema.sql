-- The whole data model of DESIGN.md §4. Later migrations add to it; none rewrites it.
-- Ids are bigint identities (Postgres 15 has no uuidv7); every tenant-owned table carries
-- tenant_id, and composite foreign keys (tenant_id, id) make cross-tenant links impossible.

-- Key fingerprints and other process-wide facts every machine must agree on.
CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    -- Capped so the mailto/VERP codes (mailer/tokens.py) keep local parts within 64 octets.
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY CHECK (id <= 2097151),
    slug                text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    sender_name         text NOT NULL CHECK (length(sender_name) BETWEEN 1 AND 200),
    sender_address      text NOT NULL CHECK (length(sender_address) BETWEEN 3 AND 254),
    sender_domain       text NOT NULL CHECK (sender_domain ~ '^[a-z0-9.-]+$'),
    -- CAN-SPAM: a valid physical postal address in every commercial message (STANDARDS 32).
    postal_address      text CHECK (postal_address IS NULL OR length(postal_address) <= 500),
    dkim_selector       text CHECK (dkim_selector IS NULL OR dkim_selector ~ '^[a-z0-9._-]+$'),
    dkim_key_path       text,
    -- Where the policy tells people to write to withdraw partner-sharing consent.
    partner_address     text,
    time_zone           text NOT NULL DEFAULT 'UTC',
    -- The policy excludes children "13 or under": sign-up attests being above this age.
    minimum_age         integer NOT NULL DEFAULT 13 CHECK (minimum_age BETWEEN 13 AND 21),
    notice_period_days  integer NOT NULL DEFAULT 30 CHECK (notice_period_days BETWEEN 0 AND 365),
    holidays            date[] NOT NULL DEFAULT '{}',
    -- Per-tenant limits (sends per hour, complaint thresholds, ...); keys documented in README.
    limits              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(limits) = 'object'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscribers (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id           bigint NOT NULL REFERENCES tenants (id),
    -- The address as given, for delivery; NULL once erased.
    email               text CHECK (email IS NULL OR length(email) <= 254),
    -- Keyed hash of the normalised address (mailer.addresses): identity within a tenant.
    email_key           bytea CHECK (email_key IS NULL OR length(email_key) = 32),
    name                text CHECK (name IS NULL OR length(name) <= 200),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'erased')),
    partner_consent     boolean NOT NULL DEFAULT false,
    age_attested_at     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    erased_at           timestamptz,
    UNIQUE (tenant_id, id),
    CONSTRAINT subscribers_tenant_email_key UNIQUE (tenant_id, email_key),
    CHECK ((status = 'erased') = (erased_at IS NOT NULL)),
    CHECK (status = 'erased' OR (email IS NOT NULL AND email_key IS NOT NULL)),
    CHECK (status = 'active' OR (email IS NULL AND email_key IS NULL AND name IS NULL))
);
-- Searching staff: by address within a tenant goes through email_key; this serves listing.
CREATE INDEX subscribers_tenant_created ON subscribers (tenant_id, id);

CREATE TABLE topics (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants (id),
    slug        text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '',
    -- marketing: newsletters, offers; notice: policy-change and service notices.
    kind        text NOT NULL CHECK (kind IN ('marketing', 'notice')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, slug)
);

CREATE TABLE subscriptions (
    tenant_id        bigint NOT NULL,
    subscriber_id    bigint NOT NULL,
    topic_id         bigint NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'confirmed', 'unsubscribed')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    confirmed_at     timestamptz,
    unsubscribed_at  timestamptz,
    PRIMARY KEY (subscriber_id, topic_id),
    FOREIGN KEY (tenant_id, subscriber_id) REFERENCES subscribers (tenant_id, id),
    FOREIGN KEY (tenant_id, topic_id) REFERENCES topics (tenant_id, id)
);
-- Enqueueing a campaign selects a topic's confirmed subscribers in one pass.
CREATE INDEX subscriptions_topic_state ON subscriptions (topic_id, state, subscriber_id);

CREATE TABLE policy_versions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     bigint NOT NULL REFERENCES tenants (id),
    version       integer NOT NULL CHECK (version > 0),
    body_md       text NOT NULL,
    summary       text NOT NULL DEFAULT '',
    published_at  timestamptz NOT NULL DEFAULT now(),
    effective_at  timestamptz NOT NULL,
    -- Set when staff published with less than the tenant's notice period.
    force_reason  text,
    published_by  text NOT NULL DEFAULT 'cli',
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, version),
    CHECK (effective_at >= published_at OR force_reason IS NOT NULL)
);

CREATE TABLE campaigns (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          bigint NOT NULL,
    topic_id           bigint NOT NULL,
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    template           text NOT NULL CHECK (template ~ '^[a-z0-9_]+$'),
    subject            text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    content            jsonb NOT NULL DEFAULT '{}',
    status             text NOT NULL DEFAULT 'draft'
                       CHECK (status IN ('draft', 'scheduled', 'sending', 'paused', 'done', 'cancelled')),
    -- Higher first: policy notices must finish before their effective date.
    priority           integer NOT NULL DEFAULT 0,
    policy_version_id  bigint,
    scheduled_at       timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    pause_reason       text,
    created_by         text NOT NULL DEFAULT 'cli',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, topic_id) REFERENCES topics (tenant_id, id),
    FOREIGN KEY (tenant_id, policy_version_id) REFERENCES policy_versions (tenant_id, id)
);
CREATE INDEX campaigns_tenant_status ON campaigns (tenant_id, status);

-- Erasable evidence behind a consent event: the ledger row keeps only the id.
CREATE TABLE consent_evidence (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    bigint NOT NULL REFERENCES tenants (id),
    ip           inet,
    user_agent   text CHECK (user_agent IS NULL OR length(user_agent) <= 1000),
    form_text    text CHECK (form_text IS NULL OR length(form_text) <= 10000),
    message_id   text CHECK (message_id IS NULL OR length(message_id) <= 998),
    detail       jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    erased_at    timestamptz,
    UNIQUE (tenant_id, id)
);

-- The consent ledger: append-only, no personal data; the current state can be rebuilt from it.
CREATE TABLE consent_events (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          bigint NOT NULL,
    subscriber_id      bigint NOT NULL,
    -- NULL for tenant-wide events (unsubscribe from all marketing, partner sharing).
    topic_id           bigint,
    action             text NOT NULL CHECK (action IN (
                           'subscribe', 'confirm', 'unsubscribe', 'unsubscribe_all',
                           'resubscribe', 'suppress', 'lift_suppression',
                           'partner_grant', 'partner_withdraw', 'erase')),
    effect             text NOT NULL CHECK (effect IN ('grant', 'withdraw', 'pending')),
    source             text NOT NULL CHECK (source IN (
                           'web_form', 'double_opt_in', 'one_click', 'landing_page', 'undo',
                           'mailto', 'preference_centre', 'import', 'api', 'staff',
                           'bounce', 'complaint', 'webhook', 'erasure', 'partner_address')),
    occurred_at        timestamptz NOT NULL DEFAULT now(),
    policy_version_id  bigint,
    evidence_id        bigint,
    campaign_id        bigint,
    -- The lawful basis claimed for imports and staff actions (e.g. 'consent', 'contract').
    lawful_basis       text CHECK (lawful_basis IS NULL OR length(lawful_basis) <= 200),
    FOREIGN KEY (tenant_id, subscriber_id) REFERENCES subscribers (tenant_id, id),
    FOREIGN KEY (tenant_id, topic_id) REFERENCES topics (tenant_id, id),
    FOREIGN KEY (tenant_id, policy_version_id) REFERENCES policy_versions (tenant_id, id),
    FOREIGN KEY (tenant_id, evidence_id) REFERENCES consent_evidence (tenant_id, id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id)
);
CREATE INDEX consent_events_subscriber ON consent_events (subscriber_id, id);
CREATE INDEX consent_events_tenant_time ON consent_events (tenant_id, occurred_at);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER consent_events_append_only
    BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER consent_events_no_truncate
    BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Keyed hash of the normalised address: outlives erasure of the address itself.
CREATE TABLE suppressions (
    tenant_id    bigint NOT NULL REFERENCES tenants (id),
    address_key  bytea NOT NULL CHECK (length(address_key) = 32),
    -- marketing: no marketing mail; all: no mail at all, notices included.
    scope        text NOT NULL CHECK (scope IN ('marketing', 'all')),
    reason       text NOT NULL CHECK (reason IN (
                     'unsubscribe', 'hard_bounce', 'soft_bounce', 'complaint',
                     'erasure', 'imported', 'manual')),
    source       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, address_key)
);

CREATE TABLE deliveries (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         bigint NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('campaign', 'transactional')),
    campaign_id       bigint,
    subscriber_id     bigint,
    -- Transactional mail only (the campaign path reads the subscriber's address at send time).
    recipient         text CHECK (recipient IS NULL OR length(recipient) <= 254),
    template          text,
    payload           jsonb NOT NULL DEFAULT '{}',
    state             text NOT NULL DEFAULT 'queued' CHECK (state IN (
                          'queued', 'sending', 'sent', 'deferred', 'failed', 'bounced',
                          'suppressed', 'cancelled')),
    priority          integer NOT NULL DEFAULT 0,
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    lease_owner       text,
    lease_expires_at  timestamptz,
    claimed_at        timestamptz,
    sent_at           timestamptz,
    message_id        text,
    relay             text,
    last_reply_code   integer,
    last_reply        text CHECK (last_reply IS NULL OR length(last_reply) <= 1000),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id),
    FOREIGN KEY (tenant_id, subscriber_id) REFERENCES subscribers (tenant_id, id),
    CHECK ((kind = 'campaign') = (campaign_id IS NOT NULL)),
    CHECK (kind = 'transactional' OR subscriber_id IS NOT NULL),
    CHECK ((state = 'sending') = (lease_owner IS NOT NULL))
);
-- A campaign mails a person at most once (DESIGN invariant 3).
CREATE UNIQUE INDEX deliveries_campaign_subscriber
    ON deliveries (campaign_id, subscriber_id) WHERE kind = 'campaign';
-- The claim query walks due work in priority order; expired leases are found separately.
CREATE INDEX deliveries_due
    ON deliveries (priority DESC, next_attempt_at, id) WHERE state IN ('queued', 'deferred');
CREATE INDEX deliveries_leased ON deliveries (lease_expires_at) WHERE state = 'sending';
CREATE INDEX deliveries_campaign_state ON deliveries (campaign_id, state);
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);

-- Shared rate budgets and health of each SMTP relay, so every worker on every machine agrees.
CREATE TABLE relays (
    name               text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,40}$'),
    per_second         numeric NOT NULL DEFAULT 50 CHECK (per_second > 0),
    per_hour           integer NOT NULL DEFAULT 100000 CHECK (per_hour > 0),
    -- Token bucket: tokens available at tokens_at.
    tokens             numeric NOT NULL DEFAULT 0,
    tokens_at          timestamptz NOT NULL DEFAULT now(),
    hour_started_at    timestamptz NOT NULL DEFAULT now(),
    hour_count         integer NOT NULL DEFAULT 0,
    consecutive_fails  integer NOT NULL DEFAULT 0,
    set_aside_until    timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Every bounce signal (SMTP reply, DSN, webhook), for the single bounce policy and its decay.
CREATE TABLE bounce_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      bigint NOT NULL REFERENCES tenants (id),
    address_key    bytea NOT NULL CHECK (length(address_key) = 32),
    delivery_id    bigint REFERENCES deliveries (id),
    status         text CHECK (status IS NULL OR status ~ '^[245]\.[0-9]{1,3}\.[0-9]{1,3}$'),
    permanent      boolean NOT NULL,
    source         text NOT NULL CHECK (source IN ('smtp', 'dsn', 'webhook')),
    occurred_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bounce_events_address ON bounce_events (tenant_id, address_key, occurred_at);

CREATE TABLE inbound_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       bigint REFERENCES tenants (id),
    kind            text NOT NULL CHECK (kind IN (
                        'unsubscribe', 'bounce', 'complaint', 'partner_withdrawal',
                        'postmaster', 'webhook', 'unmatched')),
    delivery_id     bigint REFERENCES deliveries (id),
    subscriber_id   bigint REFERENCES subscribers (id),
    received_at     timestamptz NOT NULL DEFAULT now(),
    envelope_from   text,
    envelope_rcpt   text,
    parsed          jsonb NOT NULL DEFAULT '{}',
    -- The raw message, kept for a while so an operator can see why something happened.
    raw             bytea,
    raw_expires_at  timestamptz,
    outcome         text NOT NULL DEFAULT 'recorded'
);
CREATE INDEX inbound_events_tenant_time ON inbound_events (tenant_id, received_at);
CREATE INDEX inbound_events_raw_expiry ON inbound_events (raw_expires_at) WHERE raw IS NOT NULL;

CREATE TABLE data_requests (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          bigint NOT NULL,
    subscriber_id      bigint,
    kind               text NOT NULL CHECK (kind IN (
                           'access', 'rectify', 'erase', 'client_removal', 'partner_withdrawal')),
    -- Who asked, as they wrote it; erased with the person.
    requester          text,
    status             text NOT NULL DEFAULT 'awaiting_verification' CHECK (status IN (
                           'awaiting_verification', 'open', 'done', 'rejected')),
    received_at        timestamptz NOT NULL DEFAULT now(),
    due_at             timestamptz NOT NULL,
    extended_due_at    timestamptz,
    extension_reason   text,
    verified_at        timestamptz,
    completed_at       timestamptz,
    completed_by       text,
    detail             jsonb NOT NULL DEFAULT '{}',
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    FOREIGN KEY (tenant_id, subscriber_id) REFERENCES subscribers (tenant_id, id),
    CHECK (extended_due_at IS NULL OR (extended_due_at > due_at AND extension_reason IS NOT NULL)),
    CHECK ((status = 'done') = (completed_at IS NOT NULL))
);
CREATE INDEX data_requests_open ON data_requests (tenant_id, due_at) WHERE status <> 'done';

-- Single-use, short-lived links for actions that reveal or destroy data.
CREATE TABLE action_links (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      bigint NOT NULL,
    subscriber_id  bigint NOT NULL,
    purpose        text NOT NULL CHECK (purpose IN ('access', 'erase', 'rectify', 'verify')),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, subscriber_id) REFERENCES subscribers (tenant_id, id)
);

CREATE TABLE erasure_receipts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         bigint NOT NULL REFERENCES tenants (id),
    subscriber_id     bigint NOT NULL,
    data_request_id   bigint REFERENCES data_requests (id),
    erased_at         timestamptz NOT NULL DEFAULT now(),
    erased_by         text NOT NULL,
    -- Counts and table names only: what was removed, never the removed values.
    removed           jsonb NOT NULL DEFAULT '{}',
    partner_exports   bigint[] NOT NULL DEFAULT '{}'
);

CREATE TABLE exports (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    bigint NOT NULL REFERENCES tenants (id),
    kind         text NOT NULL CHECK (kind IN ('partner', 'tenant', 'suppressions', 'subject_access')),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    row_count    integer NOT NULL DEFAULT 0,
    detail       jsonb NOT NULL DEFAULT '{}'
);

-- Who was in which partner export: erasure must tell those recipients (GDPR Art. 19).
CREATE TABLE export_subscribers (
    export_id      bigint NOT NULL REFERENCES exports (id),
    subscriber_id  bigint NOT NULL REFERENCES subscribers (id),
    PRIMARY KEY (export_id, subscriber_id)
);
CREATE INDEX export_subscribers_subscriber ON export_subscribers (subscriber_id);

CREATE TABLE imports (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         bigint NOT NULL,
    topic_id          bigint NOT NULL,
    filename          text NOT NULL,
    -- Content hash: resuming after a crash finds the same import by it.
    sha256            bytea NOT NULL CHECK (length(sha256) = 32),
    lawful_basis      text NOT NULL,
    source            text NOT NULL,
    existing_consent  boolean NOT NULL DEFAULT false,
    evidence          text,
    status            text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    -- Last line fully committed: a resumed import starts after it.
    committed_line    bigint NOT NULL DEFAULT 0,
    rows_imported     bigint NOT NULL DEFAULT 0,
    rows_skipped      bigint NOT NULL DEFAULT 0,
    rows_bad          bigint NOT NULL DEFAULT 0,
    created_by        text NOT NULL DEFAULT 'cli',
    created_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, topic_id) REFERENCES topics (tenant_id, id)
);

CREATE TABLE import_errors (
    import_id  bigint NOT NULL REFERENCES imports (id),
    line       bigint NOT NULL,
    reason     text NOT NULL,
    PRIMARY KEY (import_id, line)
);

CREATE TABLE api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL only for admin tokens, which span tenants.
    tenant_id     bigint REFERENCES tenants (id),
    role          text NOT NULL CHECK (role IN ('admin', 'marketing', 'compliance', 'client')),
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CHECK (role = 'admin' OR tenant_id IS NOT NULL)
);

-- Who did what as staff; ids only, no personal data. Append-only like the ledger.
CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    token_id      bigint REFERENCES api_tokens (id),
    tenant_id     bigint REFERENCES tenants (id),
    action        text NOT NULL,
    target_type   text,
    target_id     bigint,
    detail        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant_time ON audit_log (tenant_id, occurred_at);

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
