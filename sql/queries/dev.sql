-- The demo's dev outbox (unsubscribe_web/dev_outbox.py).

-- name: dkim_key_path(domain, selector)$
-- Stands in for the DNS lookup of selector._domainkey.domain when verifying caught mail.
SELECT dkim_key_path FROM tenants
 WHERE sender_domain = :domain AND dkim_selector = :selector AND dkim_key_path IS NOT NULL
 LIMIT 1;
