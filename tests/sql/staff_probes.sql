-- Test-only SQL for staff accounts (tests/support/staff.py).

-- name: active_account(name, email, installation_admin)$
-- A test account that signs in without an invitation (the invitation tests go through one)
-- and without an audit line, so the tests of other actions see only their own lines.
INSERT INTO staff_accounts (name, email, status, installation_admin)
VALUES (:name, :email, 'active', :installation_admin)
RETURNING id;

-- name: grant(account_id, tenant_id, role)!
INSERT INTO staff_roles (account_id, tenant_id, role) VALUES (:account_id, :tenant_id, :role);

-- name: session_with_hash(account_id, id_hash)!
-- A session whose id the test chose (the workspace helpers reuse a token's text as the id, so
-- the CSRF value other tests derive from the token matches the session's).
INSERT INTO staff_sessions (account_id, id_hash, expires_at)
VALUES (:account_id, :id_hash, now() + interval '12 hours')
ON CONFLICT (id_hash) DO UPDATE SET ended_at = NULL, last_seen_at = now();

-- name: session_rows(account_id)
SELECT id, ended_at IS NULL AS live FROM staff_sessions WHERE account_id = :account_id ORDER BY id;

-- name: audit_people()
SELECT a.action, a.actor, a.account_id, p.name
  FROM audit_log a LEFT JOIN staff_accounts p ON p.id = a.account_id
 ORDER BY a.id;

-- name: link_hashes(account_id)
SELECT purpose, used_at IS NOT NULL AS used FROM staff_links WHERE account_id = :account_id
 ORDER BY id;

-- name: session_hashes()
SELECT id_hash FROM staff_sessions ORDER BY id;

-- name: end_signin_waits()!
-- Time travel for the delay tests: every wait has passed (the counts stay).
UPDATE staff_signin_failures SET blocked_until = now() - interval '1 second';

-- name: signin_rows()
SELECT failures, encode(subject_key, 'hex') AS subject_hex FROM staff_signin_failures
 ORDER BY failures DESC;

-- name: set_account_failures(failures)!
UPDATE staff_signin_failures SET failures = :failures WHERE blocked_until <= now();

-- name: staff_state()
-- Staff accounts and roles as a POST could change them (the isolation table compares them).
SELECT a.id, a.email, a.status, a.installation_admin,
       array_agg(r.tenant_id || ':' || r.role ORDER BY r.tenant_id) AS roles
  FROM staff_accounts a LEFT JOIN staff_roles r ON r.account_id = a.id
 GROUP BY a.id ORDER BY a.id;

-- name: age_signin_failures()!
UPDATE staff_signin_failures
   SET window_start = now() - interval '2 days', blocked_until = now() - interval '1 day';

-- name: sso_links(account_id)
SELECT issuer, subject, linked_email FROM staff_oidc_links WHERE account_id = :account_id;

-- name: sso_pending(state)^
SELECT nonce, verifier FROM staff_oidc_transactions WHERE state = :state;

-- name: count_accounts()$
SELECT count(*) FROM staff_accounts;
-- name: staff_mail_rows()
SELECT id, recipient, template, payload, state, reply FROM staff_mail ORDER BY id;

-- name: endpoint_failing_for(id, hours)!
-- As if every delivery to the endpoint had failed for ``hours``.
UPDATE event_endpoints
   SET failing_since = now() - make_interval(hours => :hours)
 WHERE id = :id;

-- name: endpoint_delivered(id)!
-- What a successful delivery does to the endpoint's health (events.sql: finish_deliveries).
UPDATE event_endpoints SET failing_since = NULL, failing_reported_at = NULL WHERE id = :id;

-- name: audit_rows()
SELECT action, actor, account_id, target_id, detail FROM audit_log ORDER BY id;
