-- bench/subscribers.py only: people with a consent history, and the bare baseline's SELECT.

-- name: seed_people(tenant_id, topic_id, campaign_id, first, n)!
-- People number first .. first + n - 1 (batches must not repeat addresses).
-- Set-based: per person a subscription, the sign-up's evidence, two ledger rows (the
-- sign-up and its confirmation) and one sent delivery. email_key is a placeholder of the
-- right length; the people the benchmark looks up get their real keyed hash afterwards.
WITH p AS (
    INSERT INTO subscribers (tenant_id, email, email_key)
    SELECT :tenant_id, 'p' || g || '@bench.example', sha256(('p' || g)::bytea)
      FROM generate_series(:first::bigint, :first::bigint + :n::bigint - 1) AS g
    RETURNING id
), s AS (
    INSERT INTO subscriptions (tenant_id, subscriber_id, topic_id, state, confirmed_at)
    SELECT :tenant_id, id, :topic_id, 'confirmed', now() FROM p
    RETURNING subscriber_id
), ev AS (
    INSERT INTO consent_evidence (tenant_id, ip, user_agent, form_text)
    SELECT :tenant_id, '192.0.2.1', 'bench', 'Yes, send me the newsletter.' FROM s
    RETURNING id
), numbered_s AS (
    SELECT subscriber_id, row_number() OVER (ORDER BY subscriber_id) AS n FROM s
), numbered_ev AS (
    SELECT id, row_number() OVER (ORDER BY id) AS n FROM ev
), signed AS (
    INSERT INTO consent_events (tenant_id, subscriber_id, topic_id, action, effect, source,
                                evidence_id)
    SELECT :tenant_id, ns.subscriber_id, :topic_id, 'subscribe', 'pending', 'web_form', ne.id
      FROM numbered_s ns JOIN numbered_ev ne USING (n)
    RETURNING subscriber_id
), confirmed AS (
    INSERT INTO consent_events (tenant_id, subscriber_id, topic_id, action, effect, source)
    SELECT :tenant_id, subscriber_id, :topic_id, 'confirm', 'grant', 'double_opt_in' FROM signed
    RETURNING subscriber_id
)
INSERT INTO deliveries (tenant_id, kind, campaign_id, subscriber_id, state, sent_at)
SELECT :tenant_id, 'campaign', :campaign_id, subscriber_id, 'sent', now() FROM confirmed;

-- name: set_keys(ids, emails, keys)!
-- The real keyed hash and address of the people the benchmark finds by address.
UPDATE subscribers s SET email = u.email, email_key = u.key
  FROM unnest(CAST(:ids AS bigint[]), CAST(:emails AS text[]), CAST(:keys AS bytea[]))
       AS u(id, email, key)
 WHERE s.id = u.id;

-- name: sample_ids(tenant_id, n)
-- People spread over the whole table (not only the newest rows, which are cached).
SELECT id FROM subscribers WHERE tenant_id = :tenant_id
 ORDER BY id % 997, id LIMIT :n;

-- name: analyze()!
ANALYZE;

-- name: baseline_select(id)^
-- The baseline: one SELECT by primary key, as bare as a page's query can be.
SELECT * FROM subscribers WHERE id = :id;
