-- Probes used by the test suite only (never loaded by the application).

-- name: all_events()
SELECT * FROM consent_events ORDER BY id;

-- name: evidence(id)^
SELECT * FROM consent_evidence WHERE id = :id;

-- name: consent_table_counts()^
SELECT (SELECT count(*) FROM subscribers) AS subscribers,
       (SELECT count(*) FROM subscriptions) AS subscriptions,
       (SELECT count(*) FROM consent_events) AS events,
       (SELECT count(*) FROM consent_evidence) AS evidence,
       (SELECT count(*) FROM suppressions) AS suppressions;

-- name: rewrite_events()!
UPDATE consent_events SET action = 'confirm';

-- name: delete_events()!
DELETE FROM consent_events;

-- name: truncate_events()!
TRUNCATE consent_events;

-- name: event_columns()
SELECT column_name FROM information_schema.columns WHERE table_name = 'consent_events';

-- name: applied_migrations()
SELECT name FROM schema_migrations ORDER BY name;

-- name: table_exists(name)$
SELECT to_regclass(:name) IS NOT NULL;

-- name: web_state()^
-- Everything a public page could change, for "GET and HEAD change nothing" comparisons.
SELECT (SELECT json_agg(s ORDER BY subscriber_id, topic_id) FROM subscriptions s) AS subscriptions,
       (SELECT json_agg(e ORDER BY id) FROM consent_events e) AS events,
       (SELECT json_agg(v ORDER BY id) FROM consent_evidence v) AS evidence,
       (SELECT json_agg(p ORDER BY address_key) FROM suppressions p) AS suppressions,
       (SELECT json_agg(b ORDER BY id) FROM subscribers b) AS subscribers,
       (SELECT json_agg(d ORDER BY id) FROM deliveries d) AS deliveries,
       (SELECT json_agg(a ORDER BY id) FROM action_links a) AS action_links;

-- name: subscription_state(subscriber_id, topic_id)$
SELECT state FROM subscriptions WHERE subscriber_id = :subscriber_id AND topic_id = :topic_id;

-- name: events_of(subscriber_id)
SELECT action, effect, source, topic_id, evidence_id FROM consent_events
 WHERE subscriber_id = :subscriber_id ORDER BY id;

-- name: transactional_deliveries()
SELECT id, tenant_id, subscriber_id, recipient, template, payload, state FROM deliveries
 WHERE kind = 'transactional' ORDER BY id;

-- name: bulk_confirmed_subscribers(tenant_id, topic_id, emails, keys)
-- The mailer tests need thousands of confirmed subscribers fast: set-based, no ledger rows.
WITH s AS (
    INSERT INTO subscribers (tenant_id, email, email_key)
    SELECT :tenant_id, e, k FROM unnest(:emails::text[], :keys::bytea[]) AS u(e, k)
    RETURNING id
)
INSERT INTO subscriptions (tenant_id, subscriber_id, topic_id, state, confirmed_at)
SELECT :tenant_id, id, :topic_id, 'confirmed', now() FROM s
RETURNING subscriber_id;

-- name: campaign_deliveries(campaign_id)
SELECT d.*, p.email FROM deliveries d JOIN subscribers p ON p.id = d.subscriber_id
 WHERE d.campaign_id = :campaign_id ORDER BY d.id;

-- name: delivery_states(campaign_id)
SELECT state, count(*) AS n FROM deliveries WHERE campaign_id = :campaign_id GROUP BY state;

-- name: clock_now()$
SELECT clock_timestamp();

-- name: age_deliveries(campaign_id, seconds)!
UPDATE deliveries SET created_at = created_at - make_interval(secs => :seconds),
       next_attempt_at = next_attempt_at - make_interval(secs => :seconds)
 WHERE campaign_id = :campaign_id;

-- name: bounce_events_of(tenant_id)
SELECT * FROM bounce_events WHERE tenant_id = :tenant_id ORDER BY id;

-- name: suppression_of(tenant_id, address_key)^
SELECT * FROM suppressions WHERE tenant_id = :tenant_id AND address_key = :address_key;

-- name: relay_row(name)^
SELECT * FROM relays WHERE name = :name;

-- name: campaign_status(id)$
SELECT status FROM campaigns WHERE id = :id;

-- name: age_deliveries_by_id(id, seconds)!
UPDATE deliveries SET created_at = created_at - make_interval(secs => :seconds)
 WHERE id = :id;

-- name: define_find_anywhere#
-- Erasure tests: a session function that counts, for every text-like column of every table
-- (text, varchar, inet, json, arrays through their text form, bytea through its escaped
-- text), the rows holding a needle, case aside. plpgsql rather than query_to_xml: the
-- embedded Postgres is built without libxml.
CREATE OR REPLACE FUNCTION pg_temp.find_anywhere(needle text)
RETURNS TABLE (tbl text, col text, hits bigint) LANGUAGE plpgsql AS $fn$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT k.table_schema AS s, k.table_name AS t, k.column_name AS n, k.data_type AS d
          FROM information_schema.columns k
          JOIN information_schema.tables b
            ON b.table_schema = k.table_schema AND b.table_name = k.table_name
           AND b.table_type = 'BASE TABLE'
         WHERE k.table_schema = 'public'
           AND k.data_type IN ('text', 'character varying', 'character', 'bytea', 'inet',
                               'cidr', 'json', 'jsonb', 'ARRAY', 'USER-DEFINED')
         ORDER BY 2, 3
    LOOP
        tbl := c.t;
        col := c.n;
        EXECUTE format(
            'SELECT count(*) FROM %I.%I WHERE strpos(%s, lower($1)) > 0', c.s, c.t,
            CASE WHEN c.d = 'bytea' THEN format('lower(encode(%I, ''escape''))', c.n)
                 ELSE format('lower(%I::text)', c.n) END)
          INTO hits USING needle;
        RETURN NEXT;
    END LOOP;
END
$fn$;

-- name: find_anywhere(needle)
SELECT tbl, col, hits FROM pg_temp.find_anywhere(:needle);

-- name: searched_columns()$
-- How many columns find_anywhere looks at (so a test can tell it looked at all of them).
SELECT count(*) FROM information_schema.columns c
  JOIN information_schema.tables t
    ON t.table_schema = c.table_schema AND t.table_name = c.table_name
   AND t.table_type = 'BASE TABLE'
 WHERE c.table_schema = 'public'
   AND c.data_type IN ('text', 'character varying', 'character', 'bytea', 'inet', 'cidr',
                       'json', 'jsonb', 'ARRAY', 'USER-DEFINED');

-- name: add_inbound(tenant_id, subscriber_id, delivery_id, envelope_from, envelope_rcpt, raw, parsed)$
INSERT INTO inbound_events (tenant_id, kind, subscriber_id, delivery_id, envelope_from,
                            envelope_rcpt, raw, parsed)
VALUES (:tenant_id, 'bounce', :subscriber_id, :delivery_id, :envelope_from, :envelope_rcpt,
        :raw, :parsed)
RETURNING id;

-- name: set_reply(id, last_reply)!
UPDATE deliveries SET last_reply = :last_reply, last_reply_code = 550 WHERE id = :id;

-- name: delivery_row(id)^
SELECT * FROM deliveries WHERE id = :id;

-- name: audit_actions(tenant_id)
SELECT action FROM audit_log WHERE tenant_id = :tenant_id ORDER BY id;

-- name: export_members(export_id)
SELECT subscriber_id FROM export_subscribers WHERE export_id = :export_id ORDER BY 1;

-- name: link_row(id)^
SELECT * FROM action_links WHERE id = :id;

-- name: request_row(id)^
SELECT * FROM data_requests WHERE id = :id;

-- name: transactional_to(recipient)
SELECT * FROM deliveries WHERE kind = 'transactional' AND recipient = :recipient ORDER BY id;

-- name: subscriber_row(id)^
SELECT * FROM subscribers WHERE id = :id;

-- name: all_links()
SELECT * FROM action_links ORDER BY id;

-- name: import_ledger(tenant_id)
SELECT e.subscriber_id, e.action, e.effect, e.source, e.lawful_basis, ev.form_text, ev.detail
  FROM consent_events e LEFT JOIN consent_evidence ev ON ev.id = e.evidence_id
 WHERE e.tenant_id = :tenant_id AND e.source = 'import' ORDER BY e.id;

-- name: import_confirmations(tenant_id)
SELECT subscriber_id, recipient, template, payload FROM deliveries
 WHERE tenant_id = :tenant_id AND kind = 'transactional' AND template = 'confirm' ORDER BY id;

-- name: import_error_rows(import_id)
SELECT line, reason FROM import_errors WHERE import_id = :import_id ORDER BY line;

-- name: import_rows(tenant_id)
SELECT * FROM imports WHERE tenant_id = :tenant_id ORDER BY id;

-- name: import_subscription_states(topic_id)
SELECT s.email, sub.state FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id
 WHERE sub.topic_id = :topic_id ORDER BY s.id;

-- name: import_table_counts()^
SELECT (SELECT count(*) FROM imports) AS imports,
       (SELECT count(*) FROM import_errors) AS import_errors,
       (SELECT count(*) FROM subscribers) AS subscribers,
       (SELECT count(*) FROM subscriptions) AS subscriptions,
       (SELECT count(*) FROM consent_events) AS events,
       (SELECT count(*) FROM deliveries) AS deliveries,
       (SELECT count(*) FROM suppressions) AS suppressions;

-- name: audit_entries()
SELECT * FROM audit_log ORDER BY id;

-- name: mark_sent(id, sent_at)!
UPDATE deliveries SET state = 'sent', sent_at = :sent_at WHERE id = :id;

-- name: insert_delivery(tenant_id, subscriber_id)$
INSERT INTO deliveries (tenant_id, kind, subscriber_id, recipient, template)
VALUES (:tenant_id, 'transactional', :subscriber_id, 'x@example.org', 'confirm')
RETURNING id;

-- name: audit_count()$
SELECT count(*) FROM audit_log;

-- name: basis_ledger(tenant_id)
-- Ledger rows of imports and their corrections, with what their evidence says.
SELECT e.subscriber_id, e.action, e.effect, e.source, e.lawful_basis, v.form_text, v.detail
  FROM consent_events e LEFT JOIN consent_evidence v ON v.id = e.evidence_id
 WHERE e.tenant_id = :tenant_id AND e.action IN ('subscribe', 'correct_basis')
 ORDER BY e.id;

-- name: import_count(tenant_id)$
SELECT count(*) FROM imports WHERE tenant_id = :tenant_id;

-- name: subscription_states(tenant_id)
SELECT state FROM subscriptions WHERE tenant_id = :tenant_id;

-- name: table_names()
SELECT table_name FROM information_schema.tables WHERE table_schema = 'public';

-- name: workspace_campaigns()
-- Everything a workspace action can change (the isolation test compares before and after).
SELECT * FROM campaigns ORDER BY id;

-- name: workspace_deliveries()
SELECT id, campaign_id, state, payload FROM deliveries ORDER BY id;

-- name: audit_lines()
SELECT action, actor, tenant_id, target_id, detail FROM audit_log ORDER BY id;

-- name: server_version_num()$
SHOW server_version_num;

-- name: requests_of_tenant(tenant_id)
SELECT * FROM data_requests WHERE tenant_id = :tenant_id ORDER BY id;

-- name: inbound_of_delivery(delivery_id)
SELECT * FROM inbound_events WHERE delivery_id = :delivery_id ORDER BY id;

-- name: people_state(tenant_id)
-- What a restore must not undo, per person: status, address, partner consent, topics.
SELECT s.id, s.status, s.email, s.name, s.partner_consent,
       coalesce((SELECT jsonb_object_agg(p.topic_id::text, p.state)
                   FROM subscriptions p WHERE p.subscriber_id = s.id), '{}') AS topics
  FROM subscribers s WHERE s.tenant_id = :tenant_id ORDER BY s.id;

-- name: suppression_state(tenant_id)
SELECT address_key, scope, reason FROM suppressions WHERE tenant_id = :tenant_id
 ORDER BY address_key;

-- name: journal_heads()
SELECT file, last_seq, head_hash FROM journal_heads ORDER BY file;

-- name: make_commit_trap()!
-- A deferred foreign key that fails at COMMIT, not before: a transaction whose COMMIT fails.
CREATE TEMPORARY TABLE commit_trap (
    id int PRIMARY KEY,
    ref int REFERENCES commit_trap (id) DEFERRABLE INITIALLY DEFERRED
);

-- name: spring_commit_trap()!
INSERT INTO commit_trap VALUES (1, 2);

-- name: journal_transaction_count()$
SELECT count(*) FROM journal_transactions;

-- name: journal_transaction_held(token)$
SELECT EXISTS (SELECT 1 FROM journal_transactions WHERE token = :token);

-- name: audit_of_action(action)
SELECT actor, detail FROM audit_log WHERE action = :action ORDER BY id;

-- name: rate_limit_rows()
-- Every column of every limit row as text, to show what the table holds.
SELECT name, encode(subject_key, 'hex') AS subject_key_hex, row_to_json(r)::text AS whole,
       hits, window_end > clock_timestamp() AS live
  FROM rate_limits r ORDER BY name, subject_key;

-- name: rate_limit_columns()
SELECT column_name FROM information_schema.columns WHERE table_name = 'rate_limits'
 ORDER BY ordinal_position;

-- name: set_subscriber_language(subscriber_id, language)!
UPDATE subscribers SET language = :language WHERE id = :subscriber_id;

-- name: set_tenant_language(tenant_id, language)!
UPDATE tenants SET default_language = :language WHERE id = :tenant_id;

-- name: subscriber_language(email)$
SELECT language FROM subscribers WHERE email = :email;

-- name: workspace_templates()
-- The tenants' own templates and every version (the isolation and sandbox tests compare them).
SELECT t.id, t.tenant_id, t.name, v.version, v.html, v.body_text
  FROM email_templates t LEFT JOIN email_template_versions v ON v.template_id = t.id
 ORDER BY t.id, v.version;

-- name: set_subscriber_name(subscriber_id, name)!
UPDATE subscribers SET name = :name WHERE id = :subscriber_id;

-- name: clear_postal_address(tenant_id)!
UPDATE tenants SET postal_address = NULL WHERE id = :tenant_id;

-- name: clear_every_postal_address()!
UPDATE tenants SET postal_address = NULL;

-- name: unsubscribe_everyone()!
UPDATE subscriptions SET state = 'unsubscribed';

-- name: clear_every_dkim_key()!
UPDATE tenants SET dkim_selector = NULL, dkim_key_path = NULL;

-- name: fail_campaign_deliveries(campaign_id)!
UPDATE deliveries SET state = 'failed' WHERE campaign_id = :campaign_id;
-- name: bounce_events_count()$
SELECT count(*) FROM bounce_events;
-- name: workspace_people()^
-- What a subscriber action can change (issue 17): subscriptions, the ledger, suppressions,
-- data requests (the isolation test compares before and after).
SELECT (SELECT coalesce(json_agg(s ORDER BY s.subscriber_id, s.topic_id), '[]')
          FROM (SELECT subscriber_id, topic_id, state FROM subscriptions) s)::text AS subscriptions,
       (SELECT count(*) FROM consent_events) AS ledger,
       (SELECT coalesce(json_agg(x ORDER BY x.tenant_id, x.address_key), '[]')
          FROM (SELECT tenant_id, address_key, scope, reason FROM suppressions) x)::text AS suppressions,
       (SELECT count(*) FROM data_requests) AS requests;

-- name: staff_ledger_rows(subscriber_id)
-- The ledger rows of one person that name a staff actor.
SELECT action, topic_id, source, actor FROM consent_events
 WHERE subscriber_id = :subscriber_id AND actor IS NOT NULL ORDER BY id;
-- name: workspace_requests()
-- Data requests and what their actions touch (the request queue's isolation test).
SELECT r.*, (SELECT count(*) FROM client_removal_addresses a WHERE a.data_request_id = r.id)
       AS removal_addresses
  FROM data_requests r ORDER BY r.id;

-- name: workspace_subscriber_rows()
SELECT id, status, email, name, partner_consent FROM subscribers ORDER BY id;

-- name: partner_ledger(subscriber_id)
-- The partner-consent rows of a person with their evidence.
SELECT e.action, e.effect, e.source, v.form_text, v.detail
  FROM consent_events e LEFT JOIN consent_evidence v ON v.id = e.evidence_id
 WHERE e.subscriber_id = :subscriber_id AND e.action IN ('partner_grant', 'partner_withdraw')
 ORDER BY e.id;
-- name: all_tenant_wording()
SELECT tenant_id, key, language, text FROM tenant_wording ORDER BY tenant_id, key, language;
-- name: outbox_events(tenant_id)
-- Issue 22: the event outbox of one tenant, in order.
SELECT id, type, subscriber_id, external_id, campaign_id, data FROM events
 WHERE tenant_id = :tenant_id ORDER BY id;

-- name: outbox_rows()
SELECT * FROM events ORDER BY id;

-- name: event_endpoint_rows()
-- Issue 22: endpoints as stored (the secret must appear only sealed).
SELECT * FROM event_endpoints ORDER BY id;
-- name: policy_versions_all()
-- Every policy version of every tenant: what a refused policy POST must leave alone.
SELECT tenant_id, version, body_md, summary, effective_at, force_reason
  FROM policy_versions ORDER BY tenant_id, version;

-- name: subprocessors_all()
-- Every register, the installation's included: what a refused workspace POST leaves alone.
SELECT tenant_id, position, name, purpose, location FROM subprocessors
 ORDER BY tenant_id NULLS FIRST, position;

-- name: workspace_event_state()
-- Issue 22: endpoints (sealed secrets included, so a rotation shows), their deliveries and
-- attempts: what a refused webhooks POST must leave alone.
SELECT 'endpoint' AS kind, id, tenant_id, md5(secret_sealed::text) AS detail,
       url || event_types::text || include_address || active
           || coalesce(timeout_seconds::text, '-') || coalesce(concurrency::text, '-') AS more
  FROM event_endpoints
UNION ALL
SELECT 'delivery', event_id, tenant_id, state || ':' || attempts, endpoint_id::text
  FROM event_deliveries
UNION ALL
SELECT 'attempt', id, tenant_id, coalesce(status::text, '-'), endpoint_id::text
  FROM event_attempts
 ORDER BY 1, 2, 5;

-- name: take_transaction_id()$
-- Gives the calling transaction an xid now (as any write would).
SELECT pg_current_xact_id()::text;

-- name: unsubscribe_ledger(tenant_id)
-- The one-click batch tests: each unsubscribe ledger row with the evidence it points at.
SELECT e.subscriber_id, e.topic_id, e.source, e.evidence_id, v.user_agent, v.detail
  FROM consent_events e LEFT JOIN consent_evidence v ON v.tenant_id = e.tenant_id
                                                   AND v.id = e.evidence_id
 WHERE e.tenant_id = :tenant_id AND e.action = 'unsubscribe'
 ORDER BY e.id;

-- name: evidence_count()$
SELECT count(*) FROM consent_evidence;
