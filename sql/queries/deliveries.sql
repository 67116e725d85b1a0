-- The worker's side of the outbox (mailer/worker.py): claim, re-check, record.

-- name: release_expired_leases()$
-- A worker that died (kill -9, lost machine) leaves its claims leased; once the lease has
-- expired they go back to the queue and any worker may claim them (deliveries_leased).
WITH freed AS (
    UPDATE deliveries SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
           updated_at = now()
     WHERE state = 'sending' AND lease_expires_at < clock_timestamp()
    RETURNING 1
)
SELECT count(*) FROM freed;

-- name: claim(owner, lease_seconds, lim)
-- FOR UPDATE OF d SKIP LOCKED: concurrent workers take disjoint batches without waiting.
-- The consent re-check happens inside this one statement, on the statement's snapshot, so
-- an opt-out committed before the claim's statement_timestamp() always stops the delivery
-- (DESIGN G1); recorded in claimed_at so that window can be measured. A delivery that may
-- no longer be sent is marked 'suppressed' here rather than sent. Campaign deliveries need a
-- confirmed subscription, an active subscriber and no suppression (marketing scope blocks
-- marketing topics, 'all' everything); transactional ones only a scope 'all' suppression,
-- checked here when they name a subscriber and by the worker's pre-send check otherwise.
-- The walk follows deliveries_due (priority DESC, next_attempt_at, id) and touches only the
-- ids; the consent tests then run for the picked rows alone, as scalar subqueries on primary
-- keys, which the planner can neither hash nor turn into a scan of a whole table whatever
-- its statistics say (fresh tables have none). `d.id = ANY(ARRAY(...))` finds rows by
-- primary key where a join to a CTE let the planner hash the whole table every batch.
WITH picked AS (
    SELECT d.id
      FROM deliveries d
     -- now(), not clock_timestamp(): the claim runs in its own transaction, and a stable
     -- value lets the planner estimate the due rows and walk the index. A paused campaign's
     -- deliveries are held a thousand years in the future (campaigns.sql, hold_deliveries),
     -- so no join to campaigns is needed here: such a join made the planner misjudge how
     -- many rows are due and sort them all on every claim.
     WHERE d.state IN ('queued', 'deferred') AND d.next_attempt_at <= now()
     ORDER BY d.priority DESC, d.next_attempt_at, d.id
     LIMIT :lim
       FOR UPDATE OF d SKIP LOCKED
), judged AS MATERIALIZED (
    SELECT d.id, p.email, p.name, p.language, c.topic_id, t.kind AS topic_kind,
           CASE
             WHEN d.kind = 'transactional' THEN
                 (d.subscriber_id IS NULL OR p.status = 'active')
                 AND (SELECT x.scope FROM suppressions x
                       WHERE x.tenant_id = d.tenant_id AND x.address_key = p.email_key)
                     IS DISTINCT FROM 'all'
             ELSE p.status = 'active'
                 AND (SELECT s.state FROM subscriptions s
                       WHERE s.subscriber_id = d.subscriber_id AND s.topic_id = c.topic_id)
                     IS NOT DISTINCT FROM 'confirmed'
                 AND NOT COALESCE(
                     (SELECT x.scope = 'all' OR t.kind = 'marketing' FROM suppressions x
                       WHERE x.tenant_id = d.tenant_id AND x.address_key = p.email_key),
                     false)
           END AS sendable,
           CASE WHEN d.kind = 'transactional' OR c.status = 'sending' THEN 'claim'
                WHEN c.status = 'cancelled' THEN 'cancel'
                ELSE 'hold' END AS fate
      FROM deliveries d
      LEFT JOIN campaigns c ON c.id = d.campaign_id
      LEFT JOIN topics t ON t.id = c.topic_id
      -- OFFSET 0 keeps this a per-row primary-key lookup even on fresh, unanalysed tables.
      LEFT JOIN LATERAL (
          SELECT p.email, p.name, p.status, p.email_key, p.language FROM subscribers p
           WHERE p.id = d.subscriber_id OFFSET 0
      ) p ON true
     WHERE d.id = ANY(ARRAY(SELECT id FROM picked))
)
UPDATE deliveries d
   SET state = CASE WHEN j.fate = 'cancel' THEN 'cancelled'
                    WHEN j.fate = 'hold' THEN d.state
                    WHEN j.sendable THEN 'sending'
                    ELSE 'suppressed' END,
       lease_owner = CASE WHEN j.fate = 'claim' AND j.sendable THEN :owner END,
       lease_expires_at = CASE WHEN j.fate = 'claim' AND j.sendable
                               THEN clock_timestamp() + make_interval(secs => :lease_seconds)
                          END,
       claimed_at = CASE WHEN j.fate = 'claim' AND j.sendable THEN statement_timestamp()
                         ELSE d.claimed_at END,
       attempts = d.attempts + CASE WHEN j.fate = 'claim' AND j.sendable THEN 1 ELSE 0 END,
       -- Due rows of a campaign that is not sending (paused without hold_deliveries, which
       -- campaigns.pause always runs): held here so they cannot block the walk.
       next_attempt_at = CASE WHEN j.fate = 'hold'
                              THEN d.next_attempt_at + interval '1000 years'
                              ELSE d.next_attempt_at END,
       updated_at = now()
  FROM judged j
 WHERE d.id = j.id AND d.id = ANY(ARRAY(SELECT id FROM judged))
RETURNING d.id, d.kind, d.tenant_id, d.campaign_id, d.subscriber_id, d.template, d.payload,
          d.attempts, d.created_at, j.topic_id, j.topic_kind, j.fate,
          j.fate = 'claim' AND j.sendable AS sendable,
          COALESCE(d.recipient, j.email) AS address, j.name, j.language;

-- name: renew_leases(owner, lease_seconds)$
-- While a batch is being sent its lease is pushed forward, so a slow batch is never claimed
-- twice while its claimer is alive.
WITH renewed AS (
    UPDATE deliveries
       SET lease_expires_at = clock_timestamp() + make_interval(secs => :lease_seconds)
     WHERE lease_owner = :owner AND state = 'sending'
    RETURNING 1
)
SELECT count(*) FROM renewed;

-- name: recheck(ids, tx_ids, tx_keys)
-- The last look before SMTP (STANDARDS 27): what must not be sent after all, and why. A
-- paused campaign's deliveries go back to the queue; cancelled and opted-out ones do not.
-- The consent tests are scalar subqueries on primary keys: per-row index lookups always.
SELECT d.id,
       CASE WHEN c.status = 'cancelled' THEN 'cancelled'
            WHEN c.status <> 'sending' THEN 'queued'
            ELSE 'suppressed' END AS verdict
  FROM deliveries d
  JOIN campaigns c ON c.id = d.campaign_id
  JOIN topics t ON t.id = c.topic_id
 WHERE d.id = ANY(:ids::bigint[])
   AND (c.status <> 'sending'
        OR (SELECT p.status FROM subscribers p WHERE p.id = d.subscriber_id)
           IS DISTINCT FROM 'active'
        OR (SELECT s.state FROM subscriptions s
             WHERE s.subscriber_id = d.subscriber_id AND s.topic_id = c.topic_id)
           IS DISTINCT FROM 'confirmed'
        OR COALESCE(
            (SELECT x.scope = 'all' OR t.kind = 'marketing'
               FROM subscribers p JOIN suppressions x
                    ON x.tenant_id = p.tenant_id AND x.address_key = p.email_key
              WHERE p.id = d.subscriber_id),
            false))
UNION ALL
SELECT d.id, 'suppressed'
  FROM unnest(:tx_ids::bigint[], :tx_keys::bytea[]) AS k(id, address_key)
  JOIN deliveries d ON d.id = k.id
  JOIN suppressions x ON x.tenant_id = d.tenant_id AND x.address_key = k.address_key
 WHERE x.scope = 'all';

-- name: drop_claims(owner, ids, states)!
-- Deliveries the pre-send check stopped: suppressed, cancelled, or back to the queue (held,
-- since only a paused campaign sends them back).
UPDATE deliveries d
   SET state = r.state, lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
       attempts = d.attempts - 1,
       -- back to the queue because the campaign was paused: held like its other deliveries
       next_attempt_at = CASE WHEN r.state = 'queued' THEN d.next_attempt_at + interval '1000 years'
                              ELSE d.next_attempt_at END
  FROM unnest(:ids::bigint[], :states::text[]) AS r(id, state)
 WHERE d.id = ANY(:ids::bigint[]) AND d.id = r.id
   AND d.lease_owner = :owner AND d.state = 'sending';

-- name: record(owner, relays, give_up_seconds, ids, states, codes, replies, message_ids, delays)
-- Results of a batch in one statement; `d.id = ANY(...)` keeps it to primary-key lookups
-- whatever the planner thinks of unnest's row count. A deferral past the give-up age (counted from when
-- the delivery was queued) becomes a soft failure. The lease_owner check keeps a worker that
-- lost its lease from overwriting the result of the worker that took the delivery over.
UPDATE deliveries d
   SET state = CASE
                 WHEN r.state = 'deferred'
                      AND d.created_at + make_interval(secs => :give_up_seconds)
                          <= clock_timestamp() + make_interval(secs => r.delay)
                 THEN 'failed'
                 ELSE r.state END,
       next_attempt_at = CASE WHEN r.state IN ('deferred', 'queued')
                              THEN clock_timestamp() + make_interval(secs => r.delay)
                              ELSE d.next_attempt_at END,
       -- 'queued': handed back unsent (no rate budget in time); the attempt does not count
       attempts = d.attempts - CASE WHEN r.state = 'queued' THEN 1 ELSE 0 END,
       sent_at = CASE WHEN r.state = 'sent' THEN clock_timestamp() ELSE d.sent_at END,
       lease_owner = NULL, lease_expires_at = NULL,
       message_id = COALESCE(r.message_id, d.message_id),
       relay = r.relay, last_reply_code = r.code, last_reply = left(r.reply, 1000),
       updated_at = now()
  FROM unnest(:ids::bigint[], :states::text[], :codes::int[], :replies::text[],
              :message_ids::text[], :delays::float8[], :relays::text[])
       AS r(id, state, code, reply, message_id, delay, relay)
 WHERE d.id = ANY(:ids::bigint[]) AND d.id = r.id
   AND d.lease_owner = :owner AND d.state = 'sending'
RETURNING d.id, d.state, d.campaign_id;

-- name: release_owner(owner)$
-- A worker stopping cleanly hands back what it claimed but did not send.
WITH back AS (
    UPDATE deliveries SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
           attempts = attempts - 1, updated_at = now()
     WHERE lease_owner = :owner AND state = 'sending'
    RETURNING 1
)
SELECT count(*) FROM back;

-- name: get_delivery(id)^
SELECT * FROM deliveries WHERE id = :id;
