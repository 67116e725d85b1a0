-- Partner-sharing withdrawals mailed from an address that matches no subscriber. Each is a
-- claim, not yet a data request: one row per sender address and tenant (deduplicated), a
-- data request with its legal deadline only once the mailbox confirms (issue 14: 30 junk
-- mails must not open 30 requests due in a month).
CREATE TABLE partner_claims (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id             bigint NOT NULL REFERENCES tenants (id),
    -- The address as written (for staff and the confirmation mail); the key deduplicates.
    requester             text NOT NULL,
    requester_key         bytea NOT NULL CHECK (length(requester_key) = 32),
    sending_host          text,
    -- SPF or DKIM passed for the From's domain: only then is a confirmation mail sent.
    authenticated         boolean NOT NULL,
    auth                  jsonb NOT NULL DEFAULT '{}',
    status                text NOT NULL CHECK (status IN (
                              'listed', 'awaiting_confirmation', 'confirmed')),
    claims                integer NOT NULL DEFAULT 1,
    first_at              timestamptz NOT NULL,
    last_at               timestamptz NOT NULL,
    confirmation_sent_at  timestamptz,
    data_request_id       bigint REFERENCES data_requests (id),
    UNIQUE (tenant_id, requester_key),
    CHECK ((status = 'confirmed') = (data_request_id IS NOT NULL))
);
-- The rate limits count recent claims per tenant and per sending host.
CREATE INDEX partner_claims_tenant_time ON partner_claims (tenant_id, first_at);
CREATE INDEX partner_claims_host_time ON partner_claims (sending_host, first_at);
