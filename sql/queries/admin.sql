-- Helpers for the DDL in sql/admin (identifiers cannot be query parameters).

-- name: quote_ident(name)$
SELECT quote_ident(:name);
