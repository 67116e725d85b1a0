-- Single sign-on by OpenID Connect (mailer/staff_oidc.py): sign-ins under way and the links
-- between a provider's (issuer, subject) and a staff account.

-- name: begin(id_hash, state, nonce, verifier, seconds)!
INSERT INTO staff_oidc_transactions (id_hash, state, nonce, verifier, expires_at)
VALUES (:id_hash, :state, :nonce, :verifier, now() + make_interval(secs => :seconds));

-- name: take(id_hash)^
-- Single use: the row goes whether or not the answer checks out, so a replayed callback
-- finds nothing. Expired rows answer nothing either.
DELETE FROM staff_oidc_transactions WHERE id_hash = :id_hash
RETURNING state, nonce, verifier, expires_at > now() AS live;

-- name: purge_expired()$
WITH gone AS (DELETE FROM staff_oidc_transactions WHERE expires_at <= now() RETURNING 1)
SELECT count(*) FROM gone;

-- name: linked_account(issuer, subject)^
SELECT a.id, a.status, a.totp_secret
  FROM staff_oidc_links l JOIN staff_accounts a ON a.id = l.account_id
 WHERE l.issuer = :issuer AND l.subject = :subject;

-- name: link(issuer, subject, account_id, linked_email)^
-- Nothing when the account already has a subject at this issuer (UNIQUE (account_id, issuer)).
INSERT INTO staff_oidc_links (issuer, subject, account_id, linked_email)
VALUES (:issuer, :subject, :account_id, :linked_email)
ON CONFLICT DO NOTHING
RETURNING account_id;

-- name: activate_invited(id)!
-- An invitation accepted through the provider: the account is active without a password.
UPDATE staff_accounts SET status = 'active' WHERE id = :id AND status = 'invited';

-- name: links_of(account_id)
SELECT issuer, subject, linked_email, linked_at FROM staff_oidc_links
 WHERE account_id = :account_id ORDER BY linked_at;
