-- A tenant's own words for a listed set of strings of its subscriber pages and mail, per
-- language (issue 19): the greeting, the sign-up form's introduction, the footer's reason.
-- Plain text only (mailer/wording.py checks it: no HTML, no template syntax; pages and mail
-- escape it). The legally required labels (the unsubscribe link, the postal address) are not
-- in the list, so no row can replace them.
CREATE TABLE tenant_wording (
    tenant_id   bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key         text NOT NULL
                CONSTRAINT tenant_wording_key_known
                CHECK (key IN ('greeting', 'signup_intro', 'footer_reason')),
    language    text NOT NULL CONSTRAINT tenant_wording_language_code CHECK (language ~ '^[a-z]{2}$'),
    text        text NOT NULL
                CONSTRAINT tenant_wording_text_length CHECK (char_length(text) BETWEEN 1 AND 500),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key, language)
);
