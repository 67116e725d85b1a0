-- Queuing a million deliveries (issue 20), part two: the outbox's references to its campaign
-- and its subscriber are checked once per statement instead of once per row.
--
-- A foreign key runs one lookup per inserted row (an SPI query: an index probe and a FOR KEY
-- SHARE lock of the referenced row): queuing a campaign of N people ran 2N of them, about half
-- of the enqueue's time (EXPLAIN ANALYZE at 200,000: 2 x 200,000 trigger calls, 4 of 8 s).
-- The triggers below keep what the keys promised, with the same constraint names and
-- SQLSTATE 23503 (foreign_key_violation):
--
-- * a delivery names a campaign and a subscriber of its own tenant: checked after each INSERT
--   statement over all its rows at once (one anti-join), and per row after an UPDATE that
--   changes those columns (the sending path never does, so it pays nothing);
-- * a campaign or subscriber that deliveries name can be neither deleted nor re-keyed.
--
-- Instead of locking every referenced row, the rare side waits: a DELETE (or key change) of
-- a campaign or subscriber takes SHARE on deliveries before it looks, so it waits for every
-- write to deliveries in flight and then sees their rows (READ COMMITTED, Postgres's
-- default; a REPEATABLE READ deleter would look with its older snapshot). Optout itself
-- never deletes a subscriber or a campaign (erasure blanks the person's data); these are for
-- hands on the database, which briefly pause the outbox's writers while they look.
ALTER TABLE deliveries
    DROP CONSTRAINT deliveries_tenant_id_campaign_id_fkey,
    DROP CONSTRAINT deliveries_tenant_id_subscriber_id_fkey;

CREATE FUNCTION deliveries_references_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows n
                WHERE n.campaign_id IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM campaigns c
                                   WHERE c.tenant_id = n.tenant_id AND c.id = n.campaign_id))
    THEN
        RAISE EXCEPTION 'insert or update on table "deliveries" violates foreign key '
                        'constraint "deliveries_tenant_id_campaign_id_fkey"'
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'deliveries_tenant_id_campaign_id_fkey',
                  TABLE = 'deliveries',
                  DETAIL = 'A delivery names a campaign its tenant does not have.';
    END IF;
    IF EXISTS (SELECT 1 FROM new_rows n
                WHERE n.subscriber_id IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM subscribers p
                                   WHERE p.tenant_id = n.tenant_id AND p.id = n.subscriber_id))
    THEN
        RAISE EXCEPTION 'insert or update on table "deliveries" violates foreign key '
                        'constraint "deliveries_tenant_id_subscriber_id_fkey"'
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'deliveries_tenant_id_subscriber_id_fkey',
                  TABLE = 'deliveries',
                  DETAIL = 'A delivery names a subscriber its tenant does not have.';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_references_inserted AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_references_inserted();

-- An UPDATE that moves a delivery to another tenant, campaign or subscriber: per row, only
-- when one of them changes (never on the sending path).
CREATE FUNCTION deliveries_references_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.campaign_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM campaigns WHERE tenant_id = NEW.tenant_id AND id = NEW.campaign_id
           FOR KEY SHARE) THEN
        RAISE EXCEPTION 'insert or update on table "deliveries" violates foreign key '
                        'constraint "deliveries_tenant_id_campaign_id_fkey"'
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'deliveries_tenant_id_campaign_id_fkey', TABLE = 'deliveries';
    END IF;
    IF NEW.subscriber_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM subscribers WHERE tenant_id = NEW.tenant_id AND id = NEW.subscriber_id
           FOR KEY SHARE) THEN
        RAISE EXCEPTION 'insert or update on table "deliveries" violates foreign key '
                        'constraint "deliveries_tenant_id_subscriber_id_fkey"'
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'deliveries_tenant_id_subscriber_id_fkey', TABLE = 'deliveries';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_references_updated
    AFTER UPDATE OF tenant_id, campaign_id, subscriber_id ON deliveries
    FOR EACH ROW
    WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
          OR OLD.campaign_id IS DISTINCT FROM NEW.campaign_id
          OR OLD.subscriber_id IS DISTINCT FROM NEW.subscriber_id)
    EXECUTE FUNCTION deliveries_references_updated();

-- The referenced side: a campaign or subscriber deliveries still name stays (one function
-- for both tables; which column to look at follows from the table).
CREATE FUNCTION deliveries_referenced_gone() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    key text := CASE TG_TABLE_NAME WHEN 'campaigns' THEN 'deliveries_tenant_id_campaign_id_fkey'
                                   ELSE 'deliveries_tenant_id_subscriber_id_fkey' END;
BEGIN
    LOCK TABLE deliveries IN SHARE MODE;  -- see the note at the top
    IF (TG_TABLE_NAME = 'campaigns' AND EXISTS (
            SELECT 1 FROM deliveries d JOIN old_rows o
              ON d.campaign_id = o.id AND d.tenant_id = o.tenant_id))
       OR (TG_TABLE_NAME = 'subscribers' AND EXISTS (
            SELECT 1 FROM deliveries d JOIN old_rows o
              ON d.subscriber_id = o.id AND d.tenant_id = o.tenant_id)) THEN
        RAISE EXCEPTION 'update or delete on table "%" violates foreign key constraint "%" on '
                        'table "deliveries"', TG_TABLE_NAME, key
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = key, TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_referenced_campaign_deleted AFTER DELETE ON campaigns
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_referenced_gone();
CREATE TRIGGER deliveries_referenced_subscriber_deleted AFTER DELETE ON subscribers
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_referenced_gone();

-- A key change of a referenced row (ids are identities; a tenant_id change is the case).
CREATE FUNCTION deliveries_referenced_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    key text := CASE TG_TABLE_NAME WHEN 'campaigns' THEN 'deliveries_tenant_id_campaign_id_fkey'
                                   ELSE 'deliveries_tenant_id_subscriber_id_fkey' END;
BEGIN
    LOCK TABLE deliveries IN SHARE MODE;  -- see the note at the top
    IF (TG_TABLE_NAME = 'campaigns' AND EXISTS (
            SELECT 1 FROM deliveries WHERE campaign_id = OLD.id AND tenant_id = OLD.tenant_id))
       OR (TG_TABLE_NAME = 'subscribers' AND EXISTS (
            SELECT 1 FROM deliveries WHERE subscriber_id = OLD.id AND tenant_id = OLD.tenant_id))
    THEN
        RAISE EXCEPTION 'update or delete on table "%" violates foreign key constraint "%" on '
                        'table "deliveries"', TG_TABLE_NAME, key
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = key, TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_referenced_campaign_key AFTER UPDATE OF tenant_id, id ON campaigns
    FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.id <> NEW.id)
    EXECUTE FUNCTION deliveries_referenced_key_changed();
CREATE TRIGGER deliveries_referenced_subscriber_key AFTER UPDATE OF tenant_id, id ON subscribers
    FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.id <> NEW.id)
    EXECUTE FUNCTION deliveries_referenced_key_changed();
