-- The event outbox (mailer/events.py), its endpoints (mailer/event_endpoints.py), deliveries
-- (mailer/event_delivery.py) and the change feed. No address, name or IP is ever written to
-- events; an endpoint that takes addresses reads them from subscribers at delivery time.

-- name: insert_event(tenant_id, type, subscriber_id, campaign_id, data)$
-- The tenant's own id for the person is copied as it is now: after an erasure it is gone.
INSERT INTO events (tenant_id, type, subscriber_id, external_id, campaign_id, data)
VALUES (:tenant_id, :type, :subscriber_id,
        (SELECT external_id FROM subscribers
          WHERE tenant_id = :tenant_id AND id = :subscriber_id),
        :campaign_id, :data)
RETURNING id;

-- name: insert_subscriber_events(tenant_id, type, ids, data)$
-- One event per person, set-based (erasure of many people, bulk changes).
WITH done AS (
    INSERT INTO events (tenant_id, type, subscriber_id, external_id, data)
    SELECT s.tenant_id, :type, s.id, s.external_id, :data
      FROM subscribers s
     WHERE s.tenant_id = :tenant_id AND s.id = ANY(:ids)
     ORDER BY s.id
    RETURNING 1)
SELECT count(*) FROM done;

-- name: feed_page(tenant_id, after_xid, after_id, lim)
-- The change feed. Only transactions older than the oldest one still running in this
-- database are published: every event written later carries a larger xid, so it sorts after
-- any cursor handed out now. Transaction ids are shared by the whole cluster, so the
-- snapshot's running list also holds other databases' transactions; one of those (named in
-- pg_stat_activity with another datid) can never write here and must not hold the feed back.
-- A running xid that pg_stat_activity cannot place (finished since, or not ours to see)
-- still holds it back, until the next call. Served by events_tenant_feed (tenant_id, xid, id).
WITH snap AS (
    SELECT pg_current_snapshot() AS s
), elsewhere AS (
    SELECT a.backend_xid
      FROM pg_stat_activity a
     WHERE a.backend_xid IS NOT NULL
       AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
), horizon AS (
    SELECT COALESCE(
               (SELECT min(x) FROM pg_snapshot_xip(snap.s) AS x
                 WHERE x::xid NOT IN (SELECT backend_xid FROM elsewhere)),
               pg_snapshot_xmax(snap.s)) AS h
      FROM snap
)
SELECT id, xid::text AS xid, tenant_id, type, version, subscriber_id, external_id, campaign_id, data,
       occurred_at
  FROM events
 WHERE tenant_id = :tenant_id
   AND (xid, id) > (:after_xid::text::xid8, :after_id::bigint)
   AND xid < (SELECT h FROM horizon)
 ORDER BY xid, id
 LIMIT :lim;

-- name: expire_events(now, cutoff_default, lim)$
-- Each tenant keeps its events for limits.events_retention_days (default 30); their
-- delivery rows go with them (ON DELETE CASCADE), and the delivery log as long. At most
-- `lim` events a call: the caller repeats, each chunk its own short transaction.
-- Served by events_occurred and event_attempts_endpoint.
WITH kept AS (
    SELECT id, :now::timestamptz - make_interval(
               days => COALESCE((limits->>'events_retention_days')::integer, :cutoff_default))
           AS cutoff
      FROM tenants
), done AS (
    DELETE FROM events WHERE id IN (
        SELECT e.id FROM events e JOIN kept k ON k.id = e.tenant_id
         WHERE e.occurred_at < k.cutoff
         LIMIT :lim)
    RETURNING 1
), logged AS (
    DELETE FROM event_attempts WHERE id IN (
        SELECT a.id FROM event_attempts a JOIN kept k ON k.id = a.tenant_id
         WHERE a.at < k.cutoff
         LIMIT :lim)
    RETURNING 1
)
SELECT greatest((SELECT count(*) FROM done), (SELECT count(*) FROM logged));

-- name: get_event(tenant_id, id)^
SELECT id, xid::text AS xid, tenant_id, type, version, subscriber_id, external_id, campaign_id, data,
       occurred_at
  FROM events WHERE tenant_id = :tenant_id AND id = :id;

-- name: events_of_subscriber(tenant_id, subscriber_id)
SELECT id, type, subscriber_id, external_id, data FROM events
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id ORDER BY id;

-- name: set_external_id(tenant_id, id, external_id)^
UPDATE subscribers SET external_id = :external_id, updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id AND status = 'active'
RETURNING id, external_id;

-- name: clear_external_ids(tenant_id, ids)!
-- Erasure: after the `erased` event is written, the tenant's own id goes too.
UPDATE subscribers SET external_id = NULL
 WHERE tenant_id = :tenant_id AND id = ANY(:ids) AND external_id IS NOT NULL;

-- name: set_external_ids(tenant_id, ids, external_ids)!
-- Imports: the external_id column, set-based, before the batch's ledger rows (so their
-- events carry it). An id another person of the tenant holds already is left unset.
UPDATE subscribers s SET external_id = v.external_id, updated_at = now()
  FROM unnest(:ids::bigint[], :external_ids::text[]) AS v(id, external_id)
 WHERE s.tenant_id = :tenant_id AND s.id = v.id
   AND s.external_id IS DISTINCT FROM v.external_id
   AND NOT EXISTS (SELECT 1 FROM subscribers o
                    WHERE o.tenant_id = :tenant_id AND o.external_id = v.external_id);

-- Endpoints ------------------------------------------------------------------------------

-- name: insert_endpoint(tenant_id, url, event_types, include_address, timeout_seconds, concurrency, secret_sealed)^
-- timeout_seconds, concurrency: NULL follows the installation's settings.
INSERT INTO event_endpoints (tenant_id, url, event_types, include_address, timeout_seconds,
                             concurrency, secret_sealed)
VALUES (:tenant_id, :url, :event_types, :include_address, :timeout_seconds, :concurrency,
        :secret_sealed)
RETURNING id, tenant_id, url, event_types, include_address, active, failing_since,
          old_secret_until, created_at, timeout_seconds, concurrency;

-- name: list_endpoints(tenant_id)
SELECT id, tenant_id, url, event_types, include_address, active, failing_since,
       old_secret_until, created_at, timeout_seconds, concurrency
  FROM event_endpoints WHERE tenant_id = :tenant_id ORDER BY id;

-- name: get_endpoint(tenant_id, id)^
SELECT id, tenant_id, url, event_types, include_address, active, failing_since,
       old_secret_until, created_at, timeout_seconds, concurrency
  FROM event_endpoints WHERE tenant_id = :tenant_id AND id = :id;

-- name: update_endpoint(tenant_id, id, url, event_types, include_address, active, timeout_seconds, concurrency)^
UPDATE event_endpoints
   SET url = :url, event_types = :event_types, include_address = :include_address,
       active = :active, timeout_seconds = :timeout_seconds, concurrency = :concurrency,
       updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id
RETURNING id, tenant_id, url, event_types, include_address, active, failing_since,
          old_secret_until, created_at, timeout_seconds, concurrency;

-- name: delete_endpoint(tenant_id, id)^
DELETE FROM event_endpoints WHERE tenant_id = :tenant_id AND id = :id RETURNING id;

-- name: rotate_secret(tenant_id, id, secret_sealed, keep_old_until)^
-- The old secret keeps signing beside the new one until keep_old_until.
UPDATE event_endpoints
   SET old_secret_sealed = secret_sealed, old_secret_until = :keep_old_until,
       secret_sealed = :secret_sealed, updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id
RETURNING id, old_secret_until;

-- name: endpoint_secrets(id)^
SELECT id, tenant_id, url, include_address, active, timeout_seconds, concurrency, secret_sealed,
       CASE WHEN old_secret_until > now() THEN old_secret_sealed END AS old_secret_sealed
  FROM event_endpoints WHERE id = :id;

-- Deliveries -----------------------------------------------------------------------------

-- name: claim_deliveries(lease_seconds, lim)
-- Due deliveries whose subscriber has no earlier pending event for the same endpoint (in
-- order per subscriber; other people are not held up). SKIP LOCKED lets several processes
-- claim side by side; the lease brings back what a killed process held.
-- Served by event_deliveries_due and event_deliveries_order.
UPDATE event_deliveries d
   SET lease_until = now() + make_interval(secs => :lease_seconds), attempts = d.attempts + 1
  FROM (SELECT c.endpoint_id, c.event_id
          FROM event_deliveries c
         WHERE c.state = 'pending' AND c.next_attempt_at <= now()
           AND (c.lease_until IS NULL OR c.lease_until < now())
           AND (c.subscriber_id IS NULL OR NOT EXISTS (
                 SELECT 1 FROM event_deliveries b
                  WHERE b.endpoint_id = c.endpoint_id AND b.subscriber_id = c.subscriber_id
                    AND b.state = 'pending' AND b.event_id < c.event_id))
         ORDER BY c.next_attempt_at, c.event_id
         LIMIT :lim
         FOR UPDATE SKIP LOCKED) AS due
 WHERE d.endpoint_id = due.endpoint_id AND d.event_id = due.event_id
RETURNING d.endpoint_id, d.event_id, d.attempts, d.created_at;

-- name: delivery_payloads(event_ids)
-- The events to send, with the address read now from the subscriber row (NULL once erased);
-- the sender includes it only for endpoints that take addresses.
SELECT e.id, e.tenant_id, e.type, e.version, e.subscriber_id, e.external_id, e.campaign_id,
       e.data, e.occurred_at, s.email
  FROM events e LEFT JOIN subscribers s ON s.tenant_id = e.tenant_id AND s.id = e.subscriber_id
 WHERE e.id = ANY(:event_ids);

-- name: finish_deliveries(endpoint_ids, event_ids, tenant_ids, outcomes, next_ats, statuses, latencies, errors)$
-- One statement per batch of attempts: each delivery's new state (delivered, abandoned, or
-- pending again at next_at), its log row (no bodies), and each endpoint's health (failing
-- since its first failure with no success after it).
WITH r AS (
    SELECT * FROM unnest(:endpoint_ids::bigint[], :event_ids::bigint[], :tenant_ids::bigint[],
                         :outcomes::text[], :next_ats::timestamptz[], :statuses::integer[],
                         :latencies::integer[], :errors::text[])
           AS r(endpoint_id, event_id, tenant_id, outcome, next_at, status, latency, error)
), moved AS (
    UPDATE event_deliveries d
       SET state = CASE r.outcome WHEN 'retry' THEN 'pending' ELSE r.outcome END,
           next_attempt_at = COALESCE(r.next_at, d.next_attempt_at), lease_until = NULL,
           finished_at = CASE WHEN r.outcome <> 'retry' THEN now() END
      FROM r
     WHERE d.endpoint_id = r.endpoint_id AND d.event_id = r.event_id AND d.state = 'pending'
       -- Redundant with the join, but indexable: the planner probes the primary key for the
       -- batch instead of hashing r against a scan of every delivery (300 ms a batch at
       -- 100,000 pending in bench.events).
       AND d.endpoint_id = ANY(:endpoint_ids::bigint[]) AND d.event_id = ANY(:event_ids::bigint[])
    RETURNING 1
), logged AS (
    INSERT INTO event_attempts (endpoint_id, event_id, tenant_id, status, latency_ms, error)
    SELECT endpoint_id, event_id, tenant_id, status, latency, error FROM r
    RETURNING 1
), healthy AS (
    UPDATE event_endpoints SET failing_since = NULL, failing_reported_at = NULL
     WHERE id IN (SELECT endpoint_id FROM r WHERE outcome = 'delivered')
       AND failing_since IS NOT NULL
    RETURNING 1
), failing AS (
    UPDATE event_endpoints SET failing_since = now()
     WHERE id IN (SELECT endpoint_id FROM r WHERE outcome <> 'delivered')
       AND id NOT IN (SELECT endpoint_id FROM r WHERE outcome = 'delivered')
       AND failing_since IS NULL
    RETURNING 1
)
SELECT count(*) FROM moved;

-- name: log_test_attempt(endpoint_id, tenant_id, status, latency_ms, error)!
INSERT INTO event_attempts (endpoint_id, event_id, tenant_id, status, latency_ms, error)
VALUES (:endpoint_id, NULL, :tenant_id, :status, :latency_ms, :error);

-- name: attempt_log(tenant_id, endpoint_id, lim)
SELECT a.at, a.event_id, a.status, a.latency_ms, a.error
  FROM event_attempts a
 WHERE a.tenant_id = :tenant_id AND a.endpoint_id = :endpoint_id
 ORDER BY a.at DESC, a.id DESC
 LIMIT :lim;

-- name: redeliver_event(tenant_id, endpoint_id, event_id)$
-- Staff: queue one event again (delivered or abandoned), as a fresh delivery.
WITH done AS (
    INSERT INTO event_deliveries (endpoint_id, event_id, tenant_id, subscriber_id)
    SELECT p.id, e.id, e.tenant_id, e.subscriber_id
      FROM events e JOIN event_endpoints p ON p.tenant_id = e.tenant_id AND p.id = :endpoint_id
     WHERE e.tenant_id = :tenant_id AND e.id = :event_id
    ON CONFLICT (endpoint_id, event_id) DO UPDATE
       SET state = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL,
           created_at = now(), finished_at = NULL
    RETURNING 1)
SELECT count(*) FROM done;

-- name: redeliver_since(tenant_id, endpoint_id, since)$
-- Staff: everything since a time, again, for one endpoint (types it takes).
WITH done AS (
    INSERT INTO event_deliveries (endpoint_id, event_id, tenant_id, subscriber_id)
    SELECT p.id, e.id, e.tenant_id, e.subscriber_id
      FROM events e JOIN event_endpoints p ON p.tenant_id = e.tenant_id AND p.id = :endpoint_id
     WHERE e.tenant_id = :tenant_id AND e.occurred_at >= :since
       AND (cardinality(p.event_types) = 0 OR e.type = ANY (p.event_types))
    ON CONFLICT (endpoint_id, event_id) DO UPDATE
       SET state = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL,
           created_at = now(), finished_at = NULL
    RETURNING 1)
SELECT count(*) FROM done;

-- name: delivery_states(tenant_id, endpoint_id)
SELECT event_id, state, attempts FROM event_deliveries
 WHERE tenant_id = :tenant_id AND endpoint_id = :endpoint_id ORDER BY event_id;
