-- Single sign-on by OpenID Connect (issue 24 item 5): the link between a provider's subject
-- and a staff account, and the sign-ins under way (state, nonce, PKCE verifier) kept on the
-- server behind a short-lived cookie that holds only a random id (its hash is stored).

CREATE TABLE staff_oidc_links (
    issuer      text NOT NULL,
    subject     text NOT NULL,
    account_id  bigint NOT NULL REFERENCES staff_accounts (id),
    -- The address that matched at the first sign-in, kept as evidence of why it was linked.
    linked_email text NOT NULL,
    linked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject),
    -- One subject per account and issuer: a second provider identity cannot take it over.
    UNIQUE (account_id, issuer)
);

CREATE TABLE staff_oidc_transactions (
    id_hash     bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    state       text NOT NULL,
    nonce       text NOT NULL,
    verifier    text NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX staff_oidc_transactions_expiry ON staff_oidc_transactions (expires_at);
