-- The companies that help provide the service (sub-processors, GDPR Art. 28(2), STANDARDS 41):
-- a register per tenant, edited by its compliance staff, and an installation-wide one
-- (tenant_id NULL: relays, hosting) that every tenant's compliance and client tokens read.
-- Rows are replaced as a whole register (mailer/rights/subprocessors.py); the history a
-- reader can rely on is the policy versions whose text embeds the register.
CREATE TABLE subprocessors (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint REFERENCES tenants (id) ON DELETE CASCADE,
    position    integer NOT NULL CHECK (position >= 0),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    purpose     text NOT NULL CHECK (char_length(purpose) BETWEEN 1 AND 500),
    location    text NOT NULL CHECK (char_length(location) BETWEEN 1 AND 200),
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- One entry per company name in a register; NULL tenant (the installation) counted as 0.
CREATE UNIQUE INDEX subprocessors_name ON subprocessors (COALESCE(tenant_id, 0), lower(name));
