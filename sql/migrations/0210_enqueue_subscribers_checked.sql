-- Queuing a million deliveries (issue 20), part three: the enqueue's rows skip the per-statement
-- subscriber check of migration 0151.
--
-- That check anti-joins every inserted row against subscribers: for a campaign's enqueue, a
-- second pass over a million rows (about 15% of the statement's CPU at 200,000, EXPLAIN
-- ANALYZE and backend CPU) repeating what the statement itself has just done, since the
-- enqueue takes each subscriber_id from a join to that subscriber's own row in the campaign's
-- tenant. The enqueue says so for its own statement (optout.subscribers_checked, set 'on'
-- just before it and 'off' right after, transaction-local: campaigns.sql, enqueue), and the
-- check is skipped only then. Every other insert is checked as before; the campaign check
-- still runs on every insert (it is one small anti-join); deleting or re-keying a subscriber
-- still waits for the outbox's writers and refuses while deliveries name it (migration 0151).
CREATE OR REPLACE FUNCTION deliveries_references_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
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
    IF current_setting('optout.subscribers_checked', true) IS DISTINCT FROM 'on'
       AND EXISTS (SELECT 1 FROM new_rows n
                    WHERE n.subscriber_id IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM subscribers p
                                       WHERE p.tenant_id = n.tenant_id
                                         AND p.id = n.subscriber_id))
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
