-- Erasure finds every copy, and a journal outside the database re-applies opt-outs after a
-- restore (mailer/rights/erasure.py, mailer/journal.py, mailer/rights/journal_reapply.py).

-- Every address a person ever had, as its keyed hash: erasure finds rows that name the person
-- only by an address (test sends, relay reports, import reports) through these keys, also for
-- an address since changed by rectification. A keyed hash, like suppressions: it outlives
-- erasure and reveals no address without the hash key.
CREATE TABLE subscriber_addresses (
    tenant_id      bigint NOT NULL,
    subscriber_id  bigint NOT NULL,
    address_key    bytea NOT NULL CHECK (length(address_key) = 32),
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, subscriber_id, address_key),
    FOREIGN KEY (tenant_id, subscriber_id) REFERENCES subscribers (tenant_id, id)
);
CREATE INDEX subscriber_addresses_key ON subscriber_addresses (tenant_id, address_key);

INSERT INTO subscriber_addresses (tenant_id, subscriber_id, address_key)
SELECT tenant_id, id, email_key FROM subscribers WHERE email_key IS NOT NULL;

-- Triggers, so that no path that writes subscribers (sign-up, imports in bulk, rectification)
-- can forget one. Inserts are recorded per statement (an import of a million rows pays one
-- INSERT ... SELECT per batch, not a trigger call per row); an address change per row.
CREATE FUNCTION remember_inserted_addresses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO subscriber_addresses (tenant_id, subscriber_id, address_key)
    SELECT tenant_id, id, email_key FROM inserted_subscribers WHERE email_key IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER subscribers_remember_inserted
    AFTER INSERT ON subscribers REFERENCING NEW TABLE AS inserted_subscribers
    FOR EACH STATEMENT EXECUTE FUNCTION remember_inserted_addresses();

CREATE FUNCTION remember_changed_address() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO subscriber_addresses (tenant_id, subscriber_id, address_key)
    VALUES (NEW.tenant_id, NEW.id, NEW.email_key)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER subscribers_remember_changed
    AFTER UPDATE OF email_key ON subscribers
    FOR EACH ROW WHEN (NEW.email_key IS NOT NULL AND NEW.email_key IS DISTINCT FROM OLD.email_key)
    EXECUTE FUNCTION remember_changed_address();

-- The keyed hash of a transactional recipient (a staff test send names no subscriber), so
-- erasure finds the delivery, and the DSNs and replies that answered it, by the address.
ALTER TABLE deliveries ADD COLUMN recipient_key bytea
    CHECK (recipient_key IS NULL OR length(recipient_key) = 32);
CREATE INDEX deliveries_recipient_key ON deliveries (tenant_id, recipient_key)
    WHERE recipient_key IS NOT NULL;

-- An erased requester stays as the keyed hash of the address they wrote from: proof that the
-- request was handled (kind, dates, outcome, receipt) without the address.
ALTER TABLE data_requests ADD COLUMN requester_key bytea
    CHECK (requester_key IS NULL OR length(requester_key) = 32);

-- The journal outside the database (mailer/journal.py). Each journalled transaction inserts
-- its token here, so after a restore the lines whose token the backup holds are known to be in
-- it, and only the others are re-applied (`optout journal reapply` inserts the token of each
-- line it re-applies: a second run finds nothing to do).
CREATE TABLE journal_transactions (
    token         uuid PRIMARY KEY,
    committed_at  timestamptz NOT NULL DEFAULT now()
);

-- For each journal file, the last line on disk and the chained hash up to it, recorded after
-- the fsync: `optout journal reapply` finds an edited line, or a file cut short below it.
CREATE TABLE journal_heads (
    file        text PRIMARY KEY CHECK (file ~ '^[A-Za-z0-9._-]{1,200}$'),
    last_seq    bigint NOT NULL CHECK (last_seq > 0),
    head_hash   bytea NOT NULL CHECK (length(head_hash) = 32),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The keyed hashes of the addresses an inbound message or relay report names (sender, From,
-- reported recipient), for each tenant it may belong to: erasure finds the event by them when
-- it matched no delivery, also for an address the person has since changed.
ALTER TABLE inbound_events ADD COLUMN address_keys bytea[];
CREATE INDEX inbound_events_address_keys ON inbound_events USING gin (address_keys)
    WHERE address_keys IS NOT NULL;
