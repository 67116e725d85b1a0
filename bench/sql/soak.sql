-- Benchmark-only queries (bench/soak.py); never loaded by the application.

-- name: outcomes()^
-- What the soak's work left in the database: inbound events by kind, suppressions, the
-- one-click and preference-centre ledger rows, sign-ups waiting for confirmation.
SELECT (SELECT count(*) FROM inbound_events WHERE kind = 'bounce') AS bounces,
       (SELECT count(*) FROM inbound_events WHERE kind = 'unmatched') AS unmatched,
       (SELECT count(*) FROM suppressions) AS suppressions,
       (SELECT count(*) FROM consent_events WHERE source = 'one_click') AS one_click_events,
       (SELECT count(*) FROM consent_events WHERE source = 'preference_centre')
           AS preference_events,
       (SELECT count(*) FROM subscriptions WHERE state = 'pending') AS pending_sign_ups,
       (SELECT count(*) FROM deliveries WHERE state = 'sent') AS sent;
