-- Retention (mailer/sending/retention.py): old deliveries and parsed inbound events are
-- folded into per-campaign figures and removed; proof of notice and pinned people stay.

-- name: retention_tenants()
-- Each tenant's retention in days (tenants.limits.retention_days, default 400).
SELECT id, COALESCE((limits->>'retention_days')::integer, 400) AS retention_days
  FROM tenants ORDER BY id;

-- name: pinned_subscribers(tenant_id)
-- People with an open data request: their rows are evidence until it is answered.
SELECT DISTINCT subscriber_id FROM data_requests
 WHERE tenant_id = :tenant_id AND subscriber_id IS NOT NULL
   AND status IN ('awaiting_verification', 'open');

-- name: foldable_campaigns(tenant_id, cutoff, lim)
-- Finished campaigns older than the retention, not folded yet (campaigns_finished).
SELECT id FROM campaigns
 WHERE tenant_id = :tenant_id AND folded_at IS NULL AND status IN ('done', 'cancelled')
   AND finished_at < :cutoff
 ORDER BY finished_at
 LIMIT :lim;

-- name: save_notice_proofs(campaign_id)$
-- A notice campaign's deliveries become one proof row per person and policy version before
-- they are removed: the sent one if any (as proof_of_notice picks), else the first.
WITH best AS (
    SELECT DISTINCT ON (d.subscriber_id)
           c.tenant_id, c.policy_version_id, d.subscriber_id, c.id AS campaign_id,
           d.id AS delivery_id, d.state, d.sent_at
      FROM campaigns c JOIN deliveries d ON d.campaign_id = c.id
     WHERE c.id = :campaign_id AND c.policy_version_id IS NOT NULL AND d.kind = 'campaign'
     ORDER BY d.subscriber_id, (d.state = 'sent') DESC, d.id
), kept AS (
    INSERT INTO notice_proofs (tenant_id, policy_version_id, subscriber_id, campaign_id,
                               delivery_id, state, sent_at)
    SELECT tenant_id, policy_version_id, subscriber_id, campaign_id, delivery_id, state, sent_at
      FROM best
    -- Another notice campaign of the same version may have reached the person already.
    ON CONFLICT (tenant_id, policy_version_id, subscriber_id) DO UPDATE
       SET campaign_id = EXCLUDED.campaign_id, delivery_id = EXCLUDED.delivery_id,
           state = EXCLUDED.state, sent_at = EXCLUDED.sent_at
     WHERE (EXCLUDED.state = 'sent', -EXCLUDED.delivery_id)
           > (notice_proofs.state = 'sent', -notice_proofs.delivery_id)
    RETURNING 1
)
SELECT count(*) FROM kept;

-- name: fold_campaign(id, now, complaints, later_bounces, unsubscribed)!
-- The figures read through the deliveries, frozen before the deliveries go.
UPDATE campaigns
   SET folded_at = :now, folded_complaints = :complaints,
       folded_later_bounces = :later_bounces, folded_unsubscribed = :unsubscribed
 WHERE id = :id AND folded_at IS NULL;

-- name: folded_with_leftovers(tenant_id)
-- Folded campaigns that still have deliveries: those of people pinned when they were folded.
SELECT c.id FROM campaigns c
 WHERE c.tenant_id = :tenant_id AND c.folded_at IS NOT NULL
   AND EXISTS (SELECT 1 FROM deliveries d WHERE d.campaign_id = c.id)
 ORDER BY c.id;

-- name: campaign_delivery_chunk(campaign_id, pinned, lim)
-- Served by deliveries_campaign_state.
SELECT id FROM deliveries
 WHERE campaign_id = :campaign_id AND NOT (subscriber_id = ANY(:pinned::bigint[]))
 LIMIT :lim;

-- name: old_transactional_chunk(tenant_id, cutoff, pinned, lim)
-- Finished transactional mail last touched before the cutoff (deliveries_transactional_age).
SELECT id FROM deliveries
 WHERE kind = 'transactional' AND state NOT IN ('queued', 'deferred', 'sending')
   AND updated_at < :cutoff AND tenant_id = :tenant_id
   AND (subscriber_id IS NULL OR NOT (subscriber_id = ANY(:pinned::bigint[])))
 LIMIT :lim;

-- name: keep_counts()!
-- For this transaction only: deleting deliveries leaves campaign_counts as it is (the
-- deliveries_count_delete trigger reads it), since the rows were folded, not undone.
SELECT set_config('optout.keep_counts', 'on', true);

-- name: remove_deliveries(ids)$
-- The inbound events parsed from these deliveries' mail go with them; bounce events stay for
-- the bounce policy's memory of the address, without the link. One statement: the foreign
-- keys are checked at its end, when the referencing rows are already gone.
WITH events AS (
    DELETE FROM inbound_events WHERE delivery_id = ANY(:ids::bigint[]) RETURNING 1
), bounces AS (
    UPDATE bounce_events SET delivery_id = NULL WHERE delivery_id = ANY(:ids::bigint[])
    RETURNING 1
), gone AS (
    DELETE FROM deliveries WHERE id = ANY(:ids::bigint[]) RETURNING 1
)
-- (Every data-modifying CTE runs whether or not it is read.)
SELECT count(*) FROM gone;

-- name: remove_old_inbound(tenant_id, cutoff, pinned, lim)$
-- Parsed inbound events older than the retention (inbound_events_tenant_time), except a
-- pinned person's and those of a campaign still counted live (not folded yet).
WITH old AS (
    SELECT i.id FROM inbound_events i
      LEFT JOIN deliveries d ON d.id = i.delivery_id
      LEFT JOIN campaigns c ON c.id = d.campaign_id
     WHERE i.tenant_id = :tenant_id AND i.received_at < :cutoff
       AND (i.subscriber_id IS NULL OR NOT (i.subscriber_id = ANY(:pinned::bigint[])))
       AND (d.campaign_id IS NULL OR c.folded_at IS NOT NULL)
     LIMIT :lim
), gone AS (
    DELETE FROM inbound_events WHERE id IN (SELECT id FROM old) RETURNING 1
)
SELECT count(*) FROM gone;

-- name: remove_old_unmatched(cutoff, lim)$
-- Inbound mail that matched no tenant, past the default retention (inbound_events_tenant_time
-- serves tenant_id IS NULL).
WITH gone AS (
    DELETE FROM inbound_events
     WHERE id IN (SELECT id FROM inbound_events
                   WHERE tenant_id IS NULL AND received_at < :cutoff LIMIT :lim)
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: prune_send_minutes(before)$
-- The dashboard plots the last hour; a week of minutes is plenty.
WITH gone AS (DELETE FROM send_minutes WHERE minute < :before RETURNING 1)
SELECT count(*) FROM gone;

-- name: try_maintenance_lock()$
-- One maintenance run at a time across workers and `optout db maintain` (released at the
-- end of the session's use by unlock_maintenance).
SELECT pg_try_advisory_lock(hashtext('optout.maintain'));

-- name: unlock_maintenance()$
SELECT pg_advisory_unlock(hashtext('optout.maintain'));
