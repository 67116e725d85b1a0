-- Used by the test harness: a fresh database cloned from the migrated template.
-- {database} and {template} are identifiers quoted by Postgres's quote_ident before use.
CREATE DATABASE {database} TEMPLATE {template}
