-- Staff accounts, their roles, single-use links, sessions and sign-in failures
-- (mailer/staff_accounts.py, mailer/staff_sessions.py, mailer/signin_limits.py).

-- name: create_account(name, email, installation_admin, created_by)^
INSERT INTO staff_accounts (name, email, installation_admin, created_by)
VALUES (:name, :email, :installation_admin, :created_by)
ON CONFLICT (lower(email)) DO NOTHING
RETURNING id, name, email, status, installation_admin;

-- name: account_by_email(email)^
SELECT id, name, email, status, installation_admin, password_hash, totp_secret, totp_last_step
  FROM staff_accounts WHERE lower(email) = lower(:email);

-- name: account_by_id(id)^
SELECT id, name, email, status, installation_admin, password_hash, totp_secret, totp_last_step
  FROM staff_accounts WHERE id = :id;

-- name: count_accounts()$
SELECT count(*) FROM staff_accounts;

-- name: list_accounts(tenant_id)
-- A NULL tenant lists every account; else those with a role in that tenant. Roles as
-- "slug:role" pairs, sorted, so a listing reads the same every time.
SELECT a.id, a.name, a.email, a.status, a.installation_admin, a.created_at,
       a.totp_secret IS NOT NULL AS has_totp,
       COALESCE(array_agg(t.slug || ':' || r.role ORDER BY t.slug)
                FILTER (WHERE r.role IS NOT NULL), '{}') AS roles
  FROM staff_accounts a
  LEFT JOIN staff_roles r ON r.account_id = a.id
  LEFT JOIN tenants t ON t.id = r.tenant_id
 WHERE CAST(:tenant_id AS bigint) IS NULL
    OR EXISTS (SELECT 1 FROM staff_roles x WHERE x.account_id = a.id AND x.tenant_id = :tenant_id)
 GROUP BY a.id
 ORDER BY a.id;

-- name: roles_of(account_id)
SELECT r.tenant_id, t.slug, r.role
  FROM staff_roles r JOIN tenants t ON t.id = r.tenant_id
 WHERE r.account_id = :account_id
 ORDER BY t.slug;

-- name: set_role(account_id, tenant_id, role)!
INSERT INTO staff_roles (account_id, tenant_id, role) VALUES (:account_id, :tenant_id, :role)
ON CONFLICT (account_id, tenant_id) DO UPDATE SET role = EXCLUDED.role;

-- name: drop_role(account_id, tenant_id)!
DELETE FROM staff_roles WHERE account_id = :account_id AND tenant_id = :tenant_id;

-- name: set_installation_admin(id, flag)!
UPDATE staff_accounts SET installation_admin = :flag WHERE id = :id;

-- name: set_status(id, status)^
UPDATE staff_accounts SET status = :status WHERE id = :id RETURNING id, status;

-- name: set_password(id, password_hash)!
-- Setting a password also activates an invited account (never a disabled one).
UPDATE staff_accounts
   SET password_hash = :password_hash, password_changed_at = now(),
       status = CASE WHEN status = 'invited' THEN 'active' ELSE status END
 WHERE id = :id;

-- name: set_totp(id, secret)!
UPDATE staff_accounts SET totp_secret = :secret, totp_last_step = NULL WHERE id = :id;

-- name: use_totp_step(id, step)^
-- A step is accepted once: only a later step than the last accepted one moves it.
UPDATE staff_accounts SET totp_last_step = :step
 WHERE id = :id AND (totp_last_step IS NULL OR totp_last_step < :step)
RETURNING id;

-- name: create_link(account_id, purpose, link_hash, seconds)^
INSERT INTO staff_links (account_id, purpose, link_hash, expires_at)
VALUES (:account_id, :purpose, :link_hash, now() + make_interval(secs => :seconds))
RETURNING id, expires_at;

-- name: retire_links(account_id, purpose)!
-- A new link of one purpose ends the earlier ones: only the latest mail works.
UPDATE staff_links SET used_at = now()
 WHERE account_id = :account_id AND purpose = :purpose AND used_at IS NULL;

-- name: use_link(link_hash, purpose)^
-- Single use: the first caller gets the row, every later one none. Expiry by the database
-- clock, so every web process agrees.
UPDATE staff_links SET used_at = now()
 WHERE link_hash = :link_hash AND purpose = :purpose AND used_at IS NULL AND expires_at > now()
RETURNING account_id;

-- name: peek_link(link_hash, purpose)^
-- GET of a link page: shows the form without using the link (link scanners prefetch).
SELECT l.account_id, a.email, a.name
  FROM staff_links l JOIN staff_accounts a ON a.id = l.account_id
 WHERE l.link_hash = :link_hash AND l.purpose = :purpose AND l.used_at IS NULL
   AND l.expires_at > now() AND a.status <> 'disabled';

-- name: create_session(account_id, id_hash, max_seconds, ip, user_agent, awaiting_code)^
INSERT INTO staff_sessions (account_id, id_hash, expires_at, ip, user_agent, awaiting_code)
VALUES (:account_id, :id_hash, now() + make_interval(secs => :max_seconds), :ip, :user_agent,
        :awaiting_code)
RETURNING id;

-- name: awaiting_session(id_hash)^
-- A sign-in waiting for its second factor (short-lived: max_seconds was a few minutes).
SELECT s.id, s.account_id, a.email, a.totp_secret
  FROM staff_sessions s JOIN staff_accounts a ON a.id = s.account_id
 WHERE s.id_hash = :id_hash AND s.awaiting_code AND s.ended_at IS NULL
   AND s.expires_at > now() AND a.status = 'active';

-- name: touch_session(id_hash, idle_seconds)^
-- One statement both checks and extends: a session idle too long, past its absolute end,
-- ended, or of an account no longer active answers no row.
UPDATE staff_sessions s SET last_seen_at = now()
  FROM staff_accounts a
 WHERE s.id_hash = :id_hash AND a.id = s.account_id AND a.status = 'active'
   AND s.ended_at IS NULL AND s.expires_at > now() AND NOT s.awaiting_code
   AND s.last_seen_at > now() - make_interval(secs => :idle_seconds)
RETURNING s.id, s.account_id, a.name, a.email, a.installation_admin,
          a.totp_secret IS NOT NULL AS has_totp;

-- name: end_session(id_hash)^
-- The account whose live session this was (none: no such session, or ended already).
UPDATE staff_sessions SET ended_at = now() WHERE id_hash = :id_hash AND ended_at IS NULL
RETURNING account_id;

-- name: end_session_by_id(id, account_id)^
UPDATE staff_sessions SET ended_at = now()
 WHERE id = :id AND account_id = :account_id AND ended_at IS NULL
RETURNING id;

-- name: end_sessions(account_id, keep_id)$
-- Every live session of an account but ``keep_id`` (NULL: every one); returns how many.
WITH ended AS (
    UPDATE staff_sessions SET ended_at = now()
     WHERE account_id = :account_id AND ended_at IS NULL
       AND (CAST(:keep_id AS bigint) IS NULL OR id <> :keep_id)
    RETURNING 1)
SELECT count(*) FROM ended;

-- name: live_sessions(account_id, idle_seconds)
SELECT id, created_at, last_seen_at, expires_at, ip, user_agent
  FROM staff_sessions
 WHERE account_id = :account_id AND ended_at IS NULL AND expires_at > now()
   AND NOT awaiting_code
   AND last_seen_at > now() - make_interval(secs => :idle_seconds)
 ORDER BY id;

-- name: revoke_tokens_of(account_id)$
WITH revoked AS (
    UPDATE api_tokens SET revoked_at = now()
     WHERE created_by = :account_id AND revoked_at IS NULL
    RETURNING 1)
SELECT count(*) FROM revoked;

-- name: tenants_of_account(account_id)
-- The tenants the workspace's picker offers an account: those it holds a role in.
SELECT t.* FROM tenants t JOIN staff_roles r ON r.tenant_id = t.id
 WHERE r.account_id = :account_id
 ORDER BY t.slug;

-- name: ensure_demo_account(name, email, installation_admin)$
-- The demo's accounts: made on the first run, active (they sign in by one-time links).
INSERT INTO staff_accounts (name, email, status, installation_admin)
VALUES (:name, :email, 'active', :installation_admin)
ON CONFLICT (lower(email)) DO UPDATE SET status = 'active'
RETURNING id;

-- name: signin_wait(subject_key)$
-- Seconds until this subject may try again (0: now).
SELECT COALESCE(
    (SELECT GREATEST(0, EXTRACT(EPOCH FROM blocked_until - now()))
       FROM staff_signin_failures WHERE subject_key = :subject_key), 0)::float8;

-- name: signin_failures(subject_key, window_seconds)$
-- Failures of a subject in its current window (0 once the window has ended).
SELECT COALESCE(
    (SELECT failures FROM staff_signin_failures
      WHERE subject_key = :subject_key
        AND window_start > now() - make_interval(secs => :window_seconds)), 0);

-- name: signin_failed(subject_key, window_seconds, free, first_delay, max_delay)$
-- One more failure. The first ``free`` failures cost nothing; then the subject waits
-- first_delay seconds, doubling with each failure up to max_delay. A window that has ended
-- starts over. One statement, so concurrent failures all count.
INSERT INTO staff_signin_failures AS f (subject_key, failures, window_start, blocked_until)
VALUES (:subject_key, 1, now(), now())
ON CONFLICT (subject_key) DO UPDATE SET
    failures = CASE WHEN f.window_start <= now() - make_interval(secs => :window_seconds)
                    THEN 1 ELSE f.failures + 1 END,
    window_start = CASE WHEN f.window_start <= now() - make_interval(secs => :window_seconds)
                        THEN now() ELSE f.window_start END,
    blocked_until = CASE
        WHEN f.window_start <= now() - make_interval(secs => :window_seconds) THEN now()
        WHEN f.failures + 1 < CAST(:free AS integer) THEN now()
        ELSE now() + make_interval(secs => LEAST(
            CAST(:max_delay AS float8),
            CAST(:first_delay AS float8) * power(2, f.failures + 1 - CAST(:free AS integer))))
    END
RETURNING failures;

-- name: signin_succeeded(subject_key)!
DELETE FROM staff_signin_failures WHERE subject_key = :subject_key;

-- name: drop_recovery_codes(account_id)!
DELETE FROM staff_recovery_codes WHERE account_id = :account_id;

-- name: add_recovery_code(account_id, code_hash)!
INSERT INTO staff_recovery_codes (account_id, code_hash) VALUES (:account_id, :code_hash);

-- name: use_recovery_code(account_id, code_hash)^
-- Once each: the first use marks it, any later one finds no row.
UPDATE staff_recovery_codes SET used_at = now()
 WHERE account_id = :account_id AND code_hash = :code_hash AND used_at IS NULL
RETURNING account_id;

-- name: recovery_codes_left(account_id)$
SELECT count(*) FROM staff_recovery_codes WHERE account_id = :account_id AND used_at IS NULL;

-- name: tokens_of(account_id)
-- The API tokens a person made, newest first, with their last use.
SELECT t.id, t.label, t.role, n.slug AS tenant, t.created_at, t.expires_at, t.revoked_at,
       t.last_used_at, (t.expires_at IS NOT NULL AND t.expires_at <= now()) AS expired
  FROM api_tokens t LEFT JOIN tenants n ON n.id = t.tenant_id
 WHERE t.created_by = :account_id
 ORDER BY t.id DESC;

-- name: token_of(id, account_id)^
SELECT id FROM api_tokens WHERE id = :id AND created_by = :account_id;

-- name: purge_signin_failures()$
-- Rows past every window they could still count in (a pair's day, an account's hour) and
-- with no wait left: a flood of guessed addresses must not grow the table for ever.
WITH gone AS (
    DELETE FROM staff_signin_failures
     WHERE blocked_until < now() AND window_start < now() - interval '1 day'
    RETURNING 1)
SELECT count(*) FROM gone;
