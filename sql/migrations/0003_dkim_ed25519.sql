-- The optional second DKIM signature, Ed25519 (RFC 8463), next to the required RSA one
-- (mailer/dkim.py, mailer/campaigns.py signer_for). Receivers that do not know ed25519-sha256
-- ignore it and check the RSA signature, so it is only ever added, never used alone.
ALTER TABLE tenants
    ADD COLUMN dkim_ed25519_selector text
        CHECK (dkim_ed25519_selector IS NULL OR dkim_ed25519_selector ~ '^[a-z0-9._-]+$'),
    ADD COLUMN dkim_ed25519_key_path text;

-- A selector without a key (or a key without a selector) would be a signature nobody can make
-- or nobody can verify: both or neither.
ALTER TABLE tenants ADD CONSTRAINT tenants_dkim_ed25519_pair
    CHECK ((dkim_ed25519_selector IS NULL) = (dkim_ed25519_key_path IS NULL));
