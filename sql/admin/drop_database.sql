-- FORCE ends any connection a test left open (Postgres 13+).
DROP DATABASE IF EXISTS {database} WITH (FORCE)
