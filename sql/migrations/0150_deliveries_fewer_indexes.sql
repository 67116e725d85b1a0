-- Queuing a million deliveries (issue 20): every row a campaign queues is written into each
-- of the outbox's indexes whose predicate it meets, and WAL-logged once per index. Two of the
-- six it met were not needed:
--
-- * UNIQUE (tenant_id, id) duplicated the primary key on id; no foreign key references it
--   (inbound_events and complaints reference deliveries (id)), and every lookup by tenant and
--   id is served by the primary key.
-- * deliveries_campaign_subscriber (campaign_id, subscriber_id) WHERE kind = 'campaign' and
--   deliveries_subscriber (subscriber_id) become one unique index on (subscriber_id,
--   campaign_id): it still lets a campaign mail a person at most once (DESIGN invariant 3;
--   transactional rows have no campaign_id, and NULLs never conflict), and its leading column
--   serves every lookup by subscriber (erasure, a person's mail), so one index does both.
--   Lookups by campaign alone use deliveries_campaign_state, as before.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_tenant_id_id_key;
CREATE UNIQUE INDEX deliveries_subscriber_campaign ON deliveries (subscriber_id, campaign_id);
DROP INDEX deliveries_campaign_subscriber;
DROP INDEX deliveries_subscriber;
