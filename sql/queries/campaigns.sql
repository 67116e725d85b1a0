-- Campaigns (mailer/campaigns.py): lifecycle and statistics.

-- name: create_campaign(tenant_id, topic_id, name, template, subject, content, priority, created_by)^
INSERT INTO campaigns (tenant_id, topic_id, name, template, subject, content, priority, created_by)
VALUES (:tenant_id, :topic_id, :name, :template, :subject, :content, :priority, :created_by)
RETURNING *;

-- name: get_campaign(tenant_id, id)^
SELECT * FROM campaigns WHERE tenant_id = :tenant_id AND id = :id;

-- name: get_campaign_by_id(id)^
-- The worker's lookup: the delivery row already carries the tenant.
SELECT * FROM campaigns WHERE id = :id;

-- name: lock_campaign(tenant_id, id)^
-- Lifecycle changes lock the row, so a concurrent start, pause or cancel serialise.
SELECT * FROM campaigns WHERE tenant_id = :tenant_id AND id = :id FOR UPDATE;

-- name: list_campaigns(tenant_id)
SELECT * FROM campaigns WHERE tenant_id = :tenant_id ORDER BY id DESC;

-- name: set_status(tenant_id, id, status, pause_reason)^
UPDATE campaigns
   SET status = :status, pause_reason = :pause_reason, updated_at = now(),
       started_at = CASE WHEN :status = 'sending' THEN COALESCE(started_at, now())
                         ELSE started_at END,
       finished_at = CASE WHEN :status IN ('done', 'cancelled') THEN now() END
 WHERE tenant_id = :tenant_id AND id = :id
RETURNING *;

-- name: schedule(tenant_id, id, scheduled_at)^
UPDATE campaigns SET status = 'scheduled', scheduled_at = :scheduled_at, updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id AND status IN ('draft', 'scheduled')
RETURNING *;

-- name: due_scheduled()
-- Scheduled campaigns whose time has come; SKIP LOCKED so two workers do not both start one.
SELECT tenant_id, id FROM campaigns
 WHERE status = 'scheduled' AND scheduled_at <= now()
 ORDER BY scheduled_at
 LIMIT 10
   FOR UPDATE SKIP LOCKED;

-- name: enqueue(campaign_id)!
-- One set-based statement: the topic's confirmed, active subscribers minus suppressions
-- (marketing scope blocks marketing topics; 'all' blocks everything, notices included).
-- Served by subscriptions_topic_state. No ON CONFLICT: it is run once, by `start`, holding
-- the campaign's row lock while the campaign is a draft or scheduled, so no delivery of it
-- exists yet; a speculative insertion per row (an extra index probe and WAL record each)
-- bought nothing. The unique (subscriber, campaign) index still refuses a second row.
-- A plain INSERT, counted from its command tag: a RETURNING counted in a CTE stored every
-- row once more (spilling to disk past work_mem). Each row comes from a join to its
-- subscriber's row, in the campaign's tenant (the campaign's topic is the tenant's, and a
-- subscription's foreign key ties its subscriber to the topic's tenant), so the outbox's
-- subscriber reference holds by construction: `start` sets optout.subscribers_checked around
-- this statement and the per-statement check skips its second pass over the rows (migration
-- 0210). No condition on p.tenant_id here: before the tables had statistics (a list imported
-- and sent at once), it let the planner walk the tenant's subscribers once per subscription
-- (20,000 people: 200 million rows, 76 s); the join by primary key stays linear.
WITH c AS (
    SELECT c.id, c.tenant_id, c.topic_id, c.priority, t.kind
      FROM campaigns c JOIN topics t ON t.id = c.topic_id
     WHERE c.id = :campaign_id
)
INSERT INTO deliveries (tenant_id, kind, campaign_id, subscriber_id, priority)
SELECT c.tenant_id, 'campaign', c.id, s.subscriber_id, c.priority
  FROM c
  JOIN subscriptions s ON s.topic_id = c.topic_id AND s.state = 'confirmed'
  JOIN subscribers p ON p.id = s.subscriber_id AND p.status = 'active'
 WHERE NOT EXISTS (
        SELECT 1 FROM suppressions x
         WHERE x.tenant_id = c.tenant_id AND x.address_key = p.email_key
           AND (x.scope = 'all' OR c.kind = 'marketing'))
 ORDER BY s.subscriber_id;

-- name: subscribers_checked(value)$
-- Says, for the rest of the transaction, whether the statements that follow took every
-- delivery's subscriber from a join to it (see enqueue and migration 0210); 'off' after.
SELECT set_config('optout.subscribers_checked', :value, true);

-- name: audience_size(tenant_id, topic_id)$
-- What enqueue would insert, counted without inserting (preview, the empty-audience check).
SELECT count(*)
  FROM subscriptions s
  JOIN topics t ON t.id = s.topic_id
  JOIN subscribers p ON p.id = s.subscriber_id AND p.status = 'active'
 WHERE s.tenant_id = :tenant_id AND s.topic_id = :topic_id AND s.state = 'confirmed'
   AND NOT EXISTS (
        SELECT 1 FROM suppressions x
         WHERE x.tenant_id = s.tenant_id AND x.address_key = p.email_key
           AND (x.scope = 'all' OR t.kind = 'marketing'));

-- name: cancel_deliveries(campaign_id)$
-- Leased deliveries are left to their worker, whose pre-send check sees the cancellation.
WITH gone AS (
    UPDATE deliveries SET state = 'cancelled', updated_at = now()
     WHERE campaign_id = :campaign_id AND state IN ('queued', 'deferred')
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: retry_failed(campaign_id)$
-- "Retry the failed ones": soft failures only; a bounce is a suppression decision, not luck.
WITH again AS (
    UPDATE deliveries SET state = 'queued', created_at = now(), updated_at = now(),
           -- held like the rest of a paused campaign (hold_deliveries)
           next_attempt_at = now() + CASE
               WHEN (SELECT status FROM campaigns WHERE id = :campaign_id) = 'paused'
               THEN interval '1000 years' ELSE interval '0' END
     WHERE campaign_id = :campaign_id AND state = 'failed'
    RETURNING 1
)
SELECT count(*) FROM again;

-- name: finish_campaigns(ids)
-- A sending campaign with nothing left to send is done; deferred deliveries keep it open.
-- Asked of campaign_counts, which the deliveries triggers keep in the same transactions as
-- the rows: asking deliveries_campaign_state walked the dead 'queued' entries of everything
-- sent since the last vacuum, after every batch (a quarter of a second at a million).
UPDATE campaigns c SET status = 'done', finished_at = now(), updated_at = now()
 WHERE c.id = ANY(:ids) AND c.status = 'sending'
   AND (SELECT COALESCE(sum(k.n), 0) FROM campaign_counts k
         WHERE k.campaign_id = c.id AND k.state IN ('queued', 'deferred', 'sending')) = 0
RETURNING c.id;

-- name: error_rates(ids)
-- For the auto-pause: results so far per campaign, summed from campaign_counts, so the
-- check costs the same at the millionth delivery as at the first.
SELECT campaign_id,
       COALESCE(sum(n) FILTER (WHERE state IN ('sent', 'failed', 'bounced')), 0)::bigint AS results,
       COALESCE(sum(n) FILTER (WHERE state IN ('failed', 'bounced')), 0)::bigint AS errors
  FROM campaign_counts
 WHERE campaign_id = ANY(:ids)
 GROUP BY campaign_id;

-- name: auto_pause(id, reason)^
UPDATE campaigns SET status = 'paused', pause_reason = :reason, updated_at = now()
 WHERE id = :id AND status = 'sending'
RETURNING id;

-- name: delivery_counts(campaign_id)^
-- Summed from campaign_counts (migration 0060): the deltas the deliveries triggers append,
-- so the figures cost the same at a million deliveries as at ten, and stay right after
-- the retention job removed the rows they count.
SELECT COALESCE(sum(n), 0)::bigint AS total,
       COALESCE(sum(n) FILTER (WHERE state = 'queued'), 0)::bigint AS queued,
       COALESCE(sum(n) FILTER (WHERE state = 'sending'), 0)::bigint AS sending,
       COALESCE(sum(n) FILTER (WHERE state = 'sent'), 0)::bigint AS sent,
       COALESCE(sum(n) FILTER (WHERE state = 'deferred'), 0)::bigint AS deferred,
       COALESCE(sum(n) FILTER (WHERE state = 'failed'), 0)::bigint AS failed,
       COALESCE(sum(n) FILTER (WHERE state = 'bounced'), 0)::bigint AS bounced,
       COALESCE(sum(n) FILTER (WHERE state = 'suppressed'), 0)::bigint AS suppressed,
       COALESCE(sum(n) FILTER (WHERE state = 'cancelled'), 0)::bigint AS cancelled,
       min(first_sent_at) AS first_sent_at, max(last_sent_at) AS last_sent_at
  FROM campaign_counts WHERE campaign_id = :campaign_id;

-- name: unsubscribes_by_channel(campaign_id)
-- Withdrawals by recipients of this campaign after it reached them: ledger rows naming the
-- campaign, and withdrawals of the campaign's topic (or of all marketing) from its links.
-- Driven from the ledger's withdrawals (consent_events_campaign, consent_events_withdrawals)
-- with one primary-key probe of deliveries each, never from the campaign's million deliveries.
WITH c AS (
    SELECT id, tenant_id, topic_id, COALESCE(started_at, 'infinity') AS started_at
      FROM campaigns WHERE id = :campaign_id
), hit AS (
    SELECT e.source, e.subscriber_id
      FROM c JOIN consent_events e ON e.campaign_id = c.id
     WHERE e.effect = 'withdraw' AND e.action IN ('unsubscribe', 'unsubscribe_all', 'suppress')
       AND EXISTS (SELECT 1 FROM deliveries d
                    WHERE d.campaign_id = c.id AND d.subscriber_id = e.subscriber_id
                      AND d.kind = 'campaign' AND d.state = 'sent')
    UNION
    SELECT e.source, e.subscriber_id
      FROM c JOIN consent_events e
           ON e.tenant_id = c.tenant_id AND e.effect = 'withdraw'
          AND e.occurred_at >= c.started_at
     WHERE e.campaign_id IS NULL AND (e.topic_id = c.topic_id OR e.topic_id IS NULL)
       AND e.action IN ('unsubscribe', 'unsubscribe_all', 'suppress')
       AND EXISTS (SELECT 1 FROM deliveries d
                    WHERE d.campaign_id = c.id AND d.subscriber_id = e.subscriber_id
                      AND d.kind = 'campaign' AND d.state = 'sent'
                      AND e.occurred_at >= d.sent_at)
)
SELECT source, count(DISTINCT subscriber_id) AS people FROM hit GROUP BY source ORDER BY source;

-- name: complaints(campaign_id)$
SELECT count(*) FROM inbound_events i JOIN deliveries d ON d.id = i.delivery_id
 WHERE d.campaign_id = :campaign_id AND i.kind = 'complaint';

-- name: later_bounces(campaign_id)$
-- Bounces that arrived after a 250 (DSNs, webhooks): the delivery still says 'sent'.
SELECT count(DISTINCT b.delivery_id) FROM bounce_events b JOIN deliveries d ON d.id = b.delivery_id
 WHERE d.campaign_id = :campaign_id AND d.state = 'sent' AND b.permanent;

-- name: analyze_deliveries()!
-- A large enqueue changes the table's shape at once; fresh statistics keep the claim and
-- result queries on their indexes from the first batch rather than after autovacuum.
ANALYZE deliveries;

-- name: hold_deliveries(campaign_id)$
-- Pausing moves the campaign's waiting deliveries a thousand years ahead, keeping their
-- order and retry times: the claim only walks due rows and needs no join to campaigns.
WITH held AS (
    UPDATE deliveries SET next_attempt_at = next_attempt_at + interval '1000 years'
     WHERE campaign_id = :campaign_id AND state IN ('queued', 'deferred')
       AND next_attempt_at < now() + interval '500 years'
    RETURNING 1
)
SELECT count(*) FROM held;

-- name: release_deliveries(campaign_id)$
-- Resuming brings them back to their own times.
WITH released AS (
    UPDATE deliveries SET next_attempt_at = next_attempt_at - interval '1000 years'
     WHERE campaign_id = :campaign_id AND state IN ('queued', 'deferred')
       AND next_attempt_at >= now() + interval '500 years'
    RETURNING 1
)
SELECT count(*) FROM released;

-- name: update_draft(tenant_id, id, topic_id, name, subject, content)^
-- The workspace editor: only a campaign that has not started can change (a paused one has
-- sent some of its mail already; its recipients must all get the same message).
UPDATE campaigns
   SET topic_id = :topic_id, name = :name, subject = :subject, content = :content,
       updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id AND status IN ('draft', 'scheduled')
RETURNING *;

-- name: audience_sample(tenant_id, topic_id, lim)
-- The first recipients enqueue would pick (same filters), for the preview's recipient picker.
SELECT p.id, p.email, p.name
  FROM subscriptions s
  JOIN topics t ON t.id = s.topic_id
  JOIN subscribers p ON p.id = s.subscriber_id AND p.status = 'active'
 WHERE s.tenant_id = :tenant_id AND s.topic_id = :topic_id AND s.state = 'confirmed'
   AND NOT EXISTS (
        SELECT 1 FROM suppressions x
         WHERE x.tenant_id = s.tenant_id AND x.address_key = p.email_key
           AND (x.scope = 'all' OR t.kind = 'marketing'))
 ORDER BY p.id
 LIMIT :lim;

-- name: compact_counts(min_rows)$
-- Folds each campaign's counter rows into one per state once it has more than :min_rows,
-- in one statement: the rows deleted are exactly the rows summed, and rows appended
-- meanwhile by workers are left for the next round, so nothing is lost or doubled. A
-- concurrent compaction skips the rows this one deleted.
WITH busy AS (
    SELECT campaign_id FROM campaign_counts GROUP BY campaign_id HAVING count(*) > :min_rows
), gone AS (
    DELETE FROM campaign_counts k USING busy
     WHERE k.campaign_id = busy.campaign_id
    RETURNING k.campaign_id, k.state, k.n, k.first_sent_at, k.last_sent_at
), folded AS (
    INSERT INTO campaign_counts (campaign_id, state, n, first_sent_at, last_sent_at)
    SELECT campaign_id, state, sum(n), min(first_sent_at), max(last_sent_at)
      FROM gone GROUP BY campaign_id, state
    HAVING sum(n) <> 0 OR min(first_sent_at) IS NOT NULL
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: compact_send_minutes(min_rows)$
-- send_minutes folded like compact_counts: one row per tenant and minute.
WITH busy AS (
    SELECT tenant_id FROM send_minutes GROUP BY tenant_id HAVING count(*) > :min_rows
), gone AS (
    DELETE FROM send_minutes k USING busy
     WHERE k.tenant_id = busy.tenant_id
    RETURNING k.tenant_id, k.minute, k.n
), folded AS (
    INSERT INTO send_minutes (tenant_id, minute, n)
    SELECT tenant_id, minute, sum(n) FROM gone GROUP BY tenant_id, minute
    HAVING sum(n) <> 0
    RETURNING 1
)
SELECT count(*) FROM gone;
