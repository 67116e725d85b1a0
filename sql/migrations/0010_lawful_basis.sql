-- The lawful basis is one of a closed set (mailer/consent/imports.py LAWFUL_BASES), for new
-- rows only: NOT VALID leaves old free-text rows as they are (the ledger is append-only), and
-- `optout import correct` appends a correction row per person instead of rewriting them.
ALTER TABLE consent_events ADD CONSTRAINT consent_events_lawful_basis_known
    CHECK (lawful_basis IS NULL OR lawful_basis IN (
        'consent', 'contract', 'legal_obligation', 'legitimate_interests')) NOT VALID;

ALTER TABLE imports ADD CONSTRAINT imports_lawful_basis_known
    CHECK (lawful_basis IN (
        'consent', 'contract', 'legal_obligation', 'legitimate_interests')) NOT VALID;

-- A correction row (action correct_basis) changes no consent state: its effect is 'none', so
-- rebuilding the state from the ledger skips it. NOT VALID, then VALIDATE: the check of the
-- existing rows runs without blocking writers to the ledger.
ALTER TABLE consent_events DROP CONSTRAINT consent_events_action_check;
ALTER TABLE consent_events ADD CONSTRAINT consent_events_action_check
    CHECK (action IN (
        'subscribe', 'confirm', 'unsubscribe', 'unsubscribe_all',
        'resubscribe', 'suppress', 'lift_suppression',
        'partner_grant', 'partner_withdraw', 'erase', 'correct_basis')) NOT VALID;
ALTER TABLE consent_events VALIDATE CONSTRAINT consent_events_action_check;

ALTER TABLE consent_events DROP CONSTRAINT consent_events_effect_check;
ALTER TABLE consent_events ADD CONSTRAINT consent_events_effect_check
    CHECK (effect IN ('grant', 'withdraw', 'pending', 'none')) NOT VALID;
ALTER TABLE consent_events VALIDATE CONSTRAINT consent_events_effect_check;
