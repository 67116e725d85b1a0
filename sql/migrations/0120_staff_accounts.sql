-- Staff accounts (issue 24): a person signs in as themselves; roles per tenant; sessions held
-- server-side (only the hash of a session id is stored); single-use links for invitations and
-- password resets (only their hash is stored); the audit log and API tokens name the account.

CREATE TABLE staff_accounts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL DEFAULT '',
    email               text NOT NULL,
    status              text NOT NULL DEFAULT 'invited'
                        CHECK (status IN ('invited', 'active', 'disabled')),
    -- Installation-wide admin: every tenant, and the staff accounts themselves.
    installation_admin  boolean NOT NULL DEFAULT false,
    password_hash       text,
    password_changed_at timestamptz,
    -- TOTP secret, AES-GCM under a key derived from OPTOUT_HASH_KEY (nonce || ciphertext).
    totp_secret         bytea,
    totp_last_step      bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          bigint REFERENCES staff_accounts (id)
);
-- One account per address, whatever its case.
CREATE UNIQUE INDEX staff_accounts_email ON staff_accounts (lower(email));

CREATE TABLE staff_roles (
    account_id  bigint NOT NULL REFERENCES staff_accounts (id),
    tenant_id   bigint NOT NULL REFERENCES tenants (id),
    role        text NOT NULL CHECK (role IN ('admin', 'marketing', 'compliance', 'client')),
    PRIMARY KEY (account_id, tenant_id)
);

CREATE TABLE staff_links (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES staff_accounts (id),
    -- signin: the demo's one-time sign-in links (optout demo prints one per account).
    purpose     text NOT NULL CHECK (purpose IN ('invite', 'reset', 'signin')),
    link_hash   bytea NOT NULL UNIQUE CHECK (length(link_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX staff_links_account ON staff_links (account_id);

CREATE TABLE staff_sessions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    bigint NOT NULL REFERENCES staff_accounts (id),
    id_hash       bytea NOT NULL UNIQUE CHECK (length(id_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    ip            text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT '',
    -- Password right, second factor still to come: such a session opens nothing.
    awaiting_code boolean NOT NULL DEFAULT false
);
CREATE INDEX staff_sessions_account ON staff_sessions (account_id) WHERE ended_at IS NULL;

-- One-time recovery codes of an account with TOTP: only their SHA-256 (each is 50 random
-- bits, nothing to guess from a fast hash).
CREATE TABLE staff_recovery_codes (
    account_id  bigint NOT NULL REFERENCES staff_accounts (id),
    code_hash   bytea NOT NULL CHECK (length(code_hash) = 32),
    used_at     timestamptz,
    PRIMARY KEY (account_id, code_hash)
);

-- Failed sign-ins per subject (a keyed hash of account+IP, or of the account alone): the delay
-- grows with the failures and the row goes on the next success.
CREATE TABLE staff_signin_failures (
    subject_key      bytea PRIMARY KEY CHECK (length(subject_key) = 32),
    failures         integer NOT NULL DEFAULT 0,
    window_start     timestamptz NOT NULL DEFAULT now(),
    blocked_until    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE api_tokens ADD COLUMN created_by bigint REFERENCES staff_accounts (id);
ALTER TABLE audit_log ADD COLUMN account_id bigint REFERENCES staff_accounts (id);
CREATE INDEX audit_log_account ON audit_log (account_id, id) WHERE account_id IS NOT NULL;
