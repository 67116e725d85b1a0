-- Issue 22: each event endpoint's own request timeout and concurrency limit. NULL: the
-- installation's OPTOUT_EVENTS_TIMEOUT / OPTOUT_EVENTS_CONCURRENCY, followed as they change.
ALTER TABLE event_endpoints
    ADD COLUMN timeout_seconds integer
        CHECK (timeout_seconds IS NULL OR timeout_seconds BETWEEN 1 AND 30),
    ADD COLUMN concurrency integer
        CHECK (concurrency IS NULL OR concurrency BETWEEN 1 AND 16);
