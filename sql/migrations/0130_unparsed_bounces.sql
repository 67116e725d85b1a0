-- Bounces to a VERP address that no parser understood (outcome 'unparsed'): listed for staff,
-- counted on /metrics and the dashboard, and run again by `optout inbound reapply --unparsed`.
-- Few rows (most bounces parse), so a partial index keeps those reads off the big table.
CREATE INDEX inbound_events_unparsed_bounces ON inbound_events (tenant_id, id)
    WHERE kind = 'bounce' AND outcome = 'unparsed';
