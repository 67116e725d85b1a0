-- Subscriber pages and Optout's own mail are written in the reader's language (issue 19):
-- the language a person chose (sign-up form, import column), else their tenant's default.
-- A two-letter ISO 639-1 code; which codes have a catalog is the code's business
-- (mailer/i18n.py LANGUAGES), so shipping a language needs no migration. An unshipped code
-- falls back to the tenant's default, then English.
ALTER TABLE tenants ADD COLUMN default_language text NOT NULL DEFAULT 'en'
    CONSTRAINT tenants_default_language_code CHECK (default_language ~ '^[a-z]{2}$');

ALTER TABLE subscribers ADD COLUMN language text
    CONSTRAINT subscribers_language_code CHECK (language ~ '^[a-z]{2}$');

-- The consent statement kept as evidence is the exact text shown, in its language (issue 19).
ALTER TABLE consent_evidence ADD COLUMN form_language text
    CONSTRAINT consent_evidence_form_language_code CHECK (form_language ~ '^[a-z]{2}$');
