-- A consent change made by staff names who made it (issue 17): the workspace's or the API's
-- actor ("token:ID:ROLE" today, a staff account later). Not personal data of the subscriber,
-- so it stays in the ledger when the person is erased. NULL for the person's own actions.
ALTER TABLE consent_events ADD COLUMN actor text
    CONSTRAINT consent_events_actor_length CHECK (actor IS NULL OR length(actor) <= 200);

-- A person's page lists their data requests; without this, a scan of every request.
CREATE INDEX data_requests_subscriber ON data_requests (subscriber_id) WHERE subscriber_id IS NOT NULL;
