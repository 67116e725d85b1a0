-- Campaign statistics at a million deliveries, and retention (issue 20).
--
-- campaign_counts holds signed deltas of deliveries per (campaign, state), appended by
-- statement-level triggers in the same transaction as the change they count: a batch's claim
-- or result write adds one row per state it touched, so no row is updated by every worker
-- (no hot row), and a worker killed mid-batch rolls its count back with its write. Reads sum
-- a campaign's rows (campaign_counts_campaign); housekeeping folds them into one row per state
-- (deliveries.sql, compact_counts), so a read never sums more than a few thousand rows.
CREATE TABLE campaign_counts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id    bigint NOT NULL,
    state          text NOT NULL,
    n              bigint NOT NULL,
    -- Span of the sends this row counts (rows into 'sent' only), for the sending rate.
    first_sent_at  timestamptz,
    last_sent_at   timestamptz
);
CREATE INDEX campaign_counts_campaign ON campaign_counts (campaign_id);

-- Sends per tenant and minute (the dashboard's sending plot), kept the same way: deltas of
-- deliveries gaining or losing a send time, appended per statement, summed on read, folded
-- by housekeeping, pruned after a week by the retention job.
CREATE TABLE send_minutes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  bigint NOT NULL,
    minute     timestamptz NOT NULL,
    n          bigint NOT NULL
);
CREATE INDEX send_minutes_tenant_minute ON send_minutes (tenant_id, minute);

CREATE FUNCTION deliveries_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_counts (campaign_id, state, n, first_sent_at, last_sent_at)
    SELECT campaign_id, state, count(*), min(sent_at), max(sent_at)
      FROM new_rows WHERE campaign_id IS NOT NULL
     GROUP BY campaign_id, state;
    INSERT INTO send_minutes (tenant_id, minute, n)
    SELECT tenant_id, date_trunc('minute', sent_at), count(*)
      FROM new_rows WHERE sent_at IS NOT NULL
     GROUP BY 1, 2;
    RETURN NULL;
END $$;

-- Old rows count -1 in their state, new rows +1 in theirs: a change that leaves the state
-- alone (lease renewal, hold, release) sums to zero and writes nothing.
CREATE FUNCTION deliveries_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_counts (campaign_id, state, n, first_sent_at, last_sent_at)
    SELECT campaign_id, state, sum(delta), min(sent_at), max(sent_at)
      FROM (SELECT campaign_id, state, -1 AS delta, NULL::timestamptz AS sent_at
              FROM old_rows WHERE campaign_id IS NOT NULL
            UNION ALL
            SELECT campaign_id, state, 1, CASE WHEN state = 'sent' THEN sent_at END
              FROM new_rows WHERE campaign_id IS NOT NULL) AS moved
     GROUP BY campaign_id, state
    HAVING sum(delta) <> 0;
    INSERT INTO send_minutes (tenant_id, minute, n)
    SELECT tenant_id, minute, sum(delta)
      FROM (SELECT tenant_id, date_trunc('minute', sent_at) AS minute, -1 AS delta
              FROM old_rows WHERE sent_at IS NOT NULL
            UNION ALL
            SELECT tenant_id, date_trunc('minute', sent_at), 1
              FROM new_rows WHERE sent_at IS NOT NULL) AS moved
     GROUP BY tenant_id, minute
    HAVING sum(delta) <> 0;
    RETURN NULL;
END $$;

-- The retention job removes rows it has folded into the counts: it sets optout.keep_counts
-- for its transaction so the figures stay as they were. Any other delete (erasure) counts.
CREATE FUNCTION deliveries_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('optout.keep_counts', true) IS NOT DISTINCT FROM 'on' THEN
        RETURN NULL;
    END IF;
    INSERT INTO campaign_counts (campaign_id, state, n)
    SELECT campaign_id, state, -count(*)
      FROM old_rows WHERE campaign_id IS NOT NULL
     GROUP BY campaign_id, state;
    INSERT INTO send_minutes (tenant_id, minute, n)
    SELECT tenant_id, date_trunc('minute', sent_at), -count(*)
      FROM old_rows WHERE sent_at IS NOT NULL
     GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_insert();
CREATE TRIGGER deliveries_count_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_update();
CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_delete();

-- Deliveries already there when this migration runs.
INSERT INTO campaign_counts (campaign_id, state, n, first_sent_at, last_sent_at)
SELECT campaign_id, state, count(*), min(sent_at), max(sent_at)
  FROM deliveries WHERE campaign_id IS NOT NULL
 GROUP BY campaign_id, state;
INSERT INTO send_minutes (tenant_id, minute, n)
SELECT tenant_id, date_trunc('minute', sent_at), count(*)
  FROM deliveries WHERE sent_at IS NOT NULL
 GROUP BY 1, 2;

-- Retention: a campaign whose deliveries were removed keeps the figures that were read
-- through them (complaints, later bounces, unsubscribes by channel), frozen when folded.
ALTER TABLE campaigns
    ADD COLUMN folded_at timestamptz,
    ADD COLUMN folded_complaints bigint,
    ADD COLUMN folded_later_bounces bigint,
    ADD COLUMN folded_unsubscribed jsonb;

-- Proof of notice outlives the deliveries of notice campaigns: one row per person and
-- policy version, for the life of the tenant. Ids only, no personal data (erasure keeps it).
CREATE TABLE notice_proofs (
    tenant_id          bigint NOT NULL REFERENCES tenants (id),
    policy_version_id  bigint NOT NULL,
    subscriber_id      bigint NOT NULL,
    campaign_id        bigint NOT NULL,
    delivery_id        bigint NOT NULL,
    state              text NOT NULL,
    sent_at            timestamptz,
    PRIMARY KEY (tenant_id, policy_version_id, subscriber_id),
    FOREIGN KEY (tenant_id, policy_version_id) REFERENCES policy_versions (tenant_id, id)
);

-- The retention job finds finished campaigns by age, and old transactional mail by age.
CREATE INDEX campaigns_finished ON campaigns (finished_at) WHERE folded_at IS NULL;
CREATE INDEX deliveries_transactional_age ON deliveries (updated_at)
    WHERE kind = 'transactional' AND state NOT IN ('queued', 'deferred', 'sending');
-- Withdrawals since a campaign started, for its unsubscribes by channel: a tenant's grants
-- (an import of a million) are never walked.
CREATE INDEX consent_events_withdrawals ON consent_events (tenant_id, occurred_at)
    WHERE effect = 'withdraw';
