-- The outbox is a queue: every delivery is updated twice (claimed, recorded) and never HOT
-- (state is in its indexes), so each send leaves a dead row version and dead index entries.
-- The claim walks deliveries_due from its head, where the dead entries of everything already
-- claimed gather until a vacuum removes them; at the default scale factor (20% of the table)
-- a million-row outbox lets 200,000 pile up and the walk grows with the table. Vacuuming at
-- 1% (plus 10,000 rows) keeps that walk short at any size; each vacuum then costs about the
-- same per delivery, since it runs proportionally less often on a bigger table.
ALTER TABLE deliveries SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_analyze_scale_factor = 0.02
);
-- campaign_counts: rows appended per batch and folded every few seconds by housekeeping.
ALTER TABLE campaign_counts SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 5000
);
