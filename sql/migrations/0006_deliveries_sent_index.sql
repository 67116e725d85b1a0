-- The staff dashboard's sends-per-minute plot reads a tenant's recent sends; without this it
-- scans every delivery. Partial: queued and failed rows are not indexed.
CREATE INDEX deliveries_tenant_sent ON deliveries (tenant_id, sent_at) WHERE sent_at IS NOT NULL;
