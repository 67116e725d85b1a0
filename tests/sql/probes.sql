-- Probes used by the test suite only (never loaded by the application).

-- name: all_events()
SELECT * FROM consent_events ORDER BY id;

-- name: evidence(id)^
SELECT * FROM consent_evidence WHERE id = :id;

-- name: consent_table_counts()^
SELECT (SELECT count(*) FROM subscribers) AS subscribers,
       (SELECT count(*) FROM subscriptions) AS subscriptions,
       (SELECT count(*) FROM consent_events) AS events,
       (SELECT count(*) FROM consent_evidence) AS evidence,
       (SELECT count(*) FROM suppressions) AS suppressions;

-- name: rewrite_events()!
UPDATE consent_events SET action = 'confirm';

-- name: delete_events()!
DELETE FROM consent_events;

-- name: truncate_events()!
TRUNCATE consent_events;

-- name: event_columns()
SELECT column_name FROM information_schema.columns WHERE table_name = 'consent_events';

-- name: applied_migrations()
SELECT name FROM schema_migrations ORDER BY name;

-- name: table_exists(name)$
SELECT to_regclass(:name) IS NOT NULL;
