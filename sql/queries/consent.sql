-- The consent core (mailer/consent.py): subscriptions, the ledger, evidence, suppressions.
-- Every state change here is one idempotent statement whose RETURNING tells whether it
-- changed anything; the ledger row is written in the same transaction only when it did.

-- name: upsert_subscriber(tenant_id, email, email_key, name)^
-- The no-op update takes the row lock, so concurrent sign-ups of one address serialise.
INSERT INTO subscribers (tenant_id, email, email_key, name)
VALUES (:tenant_id, :email, :email_key, :name)
ON CONFLICT (tenant_id, email_key) DO UPDATE SET updated_at = subscribers.updated_at
RETURNING id, status, (xmax = 0) AS created;

-- name: get_subscriber(tenant_id, id)^
SELECT * FROM subscribers WHERE tenant_id = :tenant_id AND id = :id;

-- name: get_subscriber_by_key(tenant_id, email_key)^
SELECT * FROM subscribers WHERE tenant_id = :tenant_id AND email_key = :email_key;

-- name: record_age_attestation(tenant_id, id)!
UPDATE subscribers SET age_attested_at = now(), updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :id;

-- name: insert_subscription(tenant_id, subscriber_id, topic_id, state)^
INSERT INTO subscriptions (tenant_id, subscriber_id, topic_id, state, confirmed_at)
VALUES (:tenant_id, :subscriber_id, :topic_id, :state,
        CASE WHEN :state = 'confirmed' THEN now() END)
ON CONFLICT (subscriber_id, topic_id) DO NOTHING
RETURNING state;

-- name: lock_subscription(tenant_id, subscriber_id, topic_id)^
SELECT state, confirmed_at, unsubscribed_at FROM subscriptions
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id AND topic_id = :topic_id
   FOR UPDATE;

-- name: get_subscription(tenant_id, subscriber_id, topic_id)^
SELECT state, created_at, confirmed_at, unsubscribed_at FROM subscriptions
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id AND topic_id = :topic_id;

-- name: list_subscriptions(tenant_id, subscriber_id)
SELECT s.topic_id, t.slug, t.name, t.kind, s.state, s.confirmed_at, s.unsubscribed_at
  FROM subscriptions s JOIN topics t ON t.id = s.topic_id
 WHERE s.tenant_id = :tenant_id AND s.subscriber_id = :subscriber_id
 ORDER BY t.slug;

-- name: set_pending(tenant_id, subscriber_id, topic_id)^
-- A person asking again after leaving: back to pending until they confirm.
UPDATE subscriptions SET state = 'pending', updated_at = now(), confirmed_at = NULL
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id AND topic_id = :topic_id
   AND state = 'unsubscribed'
RETURNING state;

-- name: confirm_subscription(tenant_id, subscriber_id, topic_id)^
UPDATE subscriptions SET state = 'confirmed', confirmed_at = now(), updated_at = now(),
       unsubscribed_at = NULL
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id AND topic_id = :topic_id
   AND state = 'pending'
RETURNING state;

-- name: unsubscribe_topic(tenant_id, subscriber_id, topic_id)^
UPDATE subscriptions SET state = 'unsubscribed', unsubscribed_at = now(), updated_at = now()
 WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id AND topic_id = :topic_id
   AND state <> 'unsubscribed'
RETURNING state;

-- name: unsubscribe_marketing_topics(tenant_id, subscriber_id)
-- Stops every marketing list of the person at once (CAN-SPAM "all", GDPR Art. 21(3)).
UPDATE subscriptions s SET state = 'unsubscribed', unsubscribed_at = now(), updated_at = now()
  FROM topics t
 WHERE t.id = s.topic_id AND t.kind = 'marketing'
   AND s.tenant_id = :tenant_id AND s.subscriber_id = :subscriber_id
   AND s.state <> 'unsubscribed'
RETURNING s.topic_id;

-- name: set_partner_consent(consent, tenant_id, subscriber_id)^
UPDATE subscribers SET partner_consent = :consent, updated_at = now()
 WHERE tenant_id = :tenant_id AND id = :subscriber_id AND partner_consent <> :consent
RETURNING id;

-- name: insert_evidence(tenant_id, ip, user_agent, form_text, form_language, message_id, detail)$
INSERT INTO consent_evidence (tenant_id, ip, user_agent, form_text, form_language, message_id,
                              detail)
VALUES (:tenant_id, :ip, :user_agent, :form_text, :form_language, :message_id, :detail)
RETURNING id;

-- name: insert_event(tenant_id, subscriber_id, topic_id, action, effect, source, policy_version_id, evidence_id, campaign_id, lawful_basis, actor)$
-- actor: the staff member behind a staff or API change (NULL for the person's own).
INSERT INTO consent_events (tenant_id, subscriber_id, topic_id, action, effect, source,
                            policy_version_id, evidence_id, campaign_id, lawful_basis, actor)
VALUES (:tenant_id, :subscriber_id, :topic_id, :action, :effect, :source,
        :policy_version_id, :evidence_id, :campaign_id, :lawful_basis, :actor)
RETURNING id;

-- name: list_events(tenant_id, subscriber_id)
SELECT e.*, t.slug AS topic_slug FROM consent_events e LEFT JOIN topics t ON t.id = e.topic_id
 WHERE e.tenant_id = :tenant_id AND e.subscriber_id = :subscriber_id
 ORDER BY e.id;

-- name: current_policy_version(tenant_id)$
SELECT id FROM policy_versions
 WHERE tenant_id = :tenant_id AND effective_at <= now()
 ORDER BY effective_at DESC, id DESC LIMIT 1;

-- name: get_suppression(tenant_id, address_key)^
SELECT scope, reason, created_at FROM suppressions
 WHERE tenant_id = :tenant_id AND address_key = :address_key;

-- name: upsert_suppression(tenant_id, address_key, scope, reason, source)^
-- Scope only ever widens here: a marketing suppression may become 'all', never the reverse.
INSERT INTO suppressions (tenant_id, address_key, scope, reason, source)
VALUES (:tenant_id, :address_key, :scope, :reason, :source)
ON CONFLICT (tenant_id, address_key) DO UPDATE
   SET scope = 'all', reason = EXCLUDED.reason, source = EXCLUDED.source, updated_at = now()
 WHERE suppressions.scope = 'marketing' AND EXCLUDED.scope = 'all'
RETURNING scope;

-- name: lift_marketing_suppression(tenant_id, address_key)^
-- Only mailer.consent.confirm calls this: the person's own confirmed opt-in.
DELETE FROM suppressions
 WHERE tenant_id = :tenant_id AND address_key = :address_key AND scope = 'marketing'
RETURNING reason;

-- name: resubscribe_topic(tenant_id, subscriber_id, topic_id)^
-- The person's own "yes" from a link mailed to them (undo, preference centre): a left or
-- never-joined topic becomes confirmed; a pending or confirmed one is left alone (no row).
INSERT INTO subscriptions (tenant_id, subscriber_id, topic_id, state, confirmed_at)
VALUES (:tenant_id, :subscriber_id, :topic_id, 'confirmed', now())
ON CONFLICT (subscriber_id, topic_id) DO UPDATE
   SET state = 'confirmed', confirmed_at = now(), unsubscribed_at = NULL, updated_at = now()
 WHERE subscriptions.state = 'unsubscribed'
RETURNING (xmax = 0) AS created;

-- name: unsubscribe_from_link(tenant_id, subscriber_id, topic_id, ip, user_agent, detail, source, journal_token)^
-- The one-click hot path in ONE statement (one round trip, atomic without BEGIN/COMMIT): the
-- idempotent UPDATE, then evidence and ledger rows only for a row it changed, then who and
-- what for the confirmation page. No row back means the topic is not the tenant's.
-- With a journal (:journal_token not NULL), a change also records the journal's transaction
-- token and returns the transaction time and the person's address keys for its line, so the
-- journalled path needs no BEGIN, COMMIT or extra query either (mailer/journal.py).
-- The parameters are declared in the order they first appear ($1..$8): mailer.consent calls
-- the statement with asyncpg directly, in that order.
WITH changed AS (
    UPDATE subscriptions SET state = 'unsubscribed', unsubscribed_at = now(), updated_at = now()
     WHERE tenant_id = :tenant_id AND subscriber_id = :subscriber_id AND topic_id = :topic_id
       AND state <> 'unsubscribed'
    RETURNING subscriber_id, topic_id
), evidence AS (
    INSERT INTO consent_evidence (tenant_id, ip, user_agent, detail)
    SELECT :tenant_id, :ip, :user_agent, :detail FROM changed
    RETURNING id
), event AS (
    INSERT INTO consent_events (tenant_id, subscriber_id, topic_id, action, effect, source,
                                policy_version_id, evidence_id)
    SELECT :tenant_id, c.subscriber_id, c.topic_id, 'unsubscribe', 'withdraw', :source,
           (SELECT pv.id FROM policy_versions pv
             WHERE pv.tenant_id = :tenant_id AND pv.effective_at <= now()
             ORDER BY pv.effective_at DESC, pv.id DESC LIMIT 1),
           e.id
      FROM changed c CROSS JOIN evidence e
    RETURNING id
), journalled AS (
    INSERT INTO journal_transactions (token)
    SELECT CAST(:journal_token AS uuid) FROM event WHERE :journal_token IS NOT NULL
    RETURNING committed_at
)
SELECT EXISTS (SELECT 1 FROM event) AS changed, t.sender_name, tp.name AS topic_name, s.email,
       (SELECT committed_at FROM journalled) AS journal_time,
       CASE WHEN EXISTS (SELECT 1 FROM journalled)
            THEN (SELECT array_agg(a.address_key ORDER BY a.address_key)
                    FROM subscriber_addresses a
                   WHERE a.tenant_id = :tenant_id AND a.subscriber_id = :subscriber_id)
       END AS address_keys,
       COALESCE(s.language, t.default_language) AS language
  FROM tenants t
  JOIN topics tp ON tp.tenant_id = t.id AND tp.id = :topic_id
  LEFT JOIN subscribers s ON s.tenant_id = t.id AND s.id = :subscriber_id
 WHERE t.id = :tenant_id;

-- name: unsubscribe_from_links(tenant_ids, subscriber_ids, topic_ids, ips, user_agents, details, sources, journal_token)
-- unsubscribe_from_link for a micro-batch of one-click POSTs (mailer/consent/link_batch.py)
-- in ONE statement: one round trip, one commit, one WAL flush and one journal transaction
-- for all of them. Request n of the batch is row n of the arrays (ord). The same
-- subscription asked twice changes once: the first asker (lowest ord) changes it and gets
-- the ledger row, the others are answered "already unsubscribed". The order in which the
-- UPDATE locks rows is the plan's: two batches in flight that share rows may deadlock, and
-- the caller then re-runs the failed batch's requests one at a time.
-- Evidence ids come from the identity's sequence in a CTE (materialised: nextval is
-- volatile), so each ledger row points at its own request's evidence, whatever order
-- RETURNING gives. One answer row per request whose topic is its tenant's (a missing ord is
-- the 404); journal_time and address_keys only when the batch changed something and a journal
-- token was given. Parameters are declared in the order they first appear ($1..$8): mailer.
-- consent calls the statement with asyncpg directly, in that order.
WITH asked AS (
    SELECT a.tenant_id, a.subscriber_id, a.topic_id, a.ip, a.user_agent, a.detail, a.source,
           a.ord
      FROM unnest(CAST(:tenant_ids AS bigint[]), CAST(:subscriber_ids AS bigint[]),
                  CAST(:topic_ids AS bigint[]), CAST(:ips AS inet[]),
                  CAST(:user_agents AS text[]), CAST(:details AS jsonb[]),
                  CAST(:sources AS text[]))
           WITH ORDINALITY AS a(tenant_id, subscriber_id, topic_id, ip, user_agent, detail,
                                source, ord)
), first_asker AS (
    SELECT DISTINCT ON (tenant_id, subscriber_id, topic_id) *
      FROM asked
     ORDER BY tenant_id, subscriber_id, topic_id, ord
), changed AS (
    UPDATE subscriptions s
       SET state = 'unsubscribed', unsubscribed_at = now(), updated_at = now()
      FROM first_asker f
     WHERE s.tenant_id = f.tenant_id AND s.subscriber_id = f.subscriber_id
       AND s.topic_id = f.topic_id AND s.state <> 'unsubscribed'
    RETURNING f.ord, f.tenant_id, f.subscriber_id, f.topic_id, f.ip, f.user_agent, f.detail,
              f.source
), numbered AS (
    SELECT c.*, nextval(pg_get_serial_sequence('consent_evidence', 'id')) AS evidence_id
      FROM changed c
), evidence AS (
    INSERT INTO consent_evidence (id, tenant_id, ip, user_agent, detail)
    OVERRIDING SYSTEM VALUE
    SELECT n.evidence_id, n.tenant_id, n.ip, n.user_agent, n.detail FROM numbered n
    RETURNING id
), event AS (
    INSERT INTO consent_events (tenant_id, subscriber_id, topic_id, action, effect, source,
                                policy_version_id, evidence_id)
    SELECT n.tenant_id, n.subscriber_id, n.topic_id, 'unsubscribe', 'withdraw', n.source,
           (SELECT pv.id FROM policy_versions pv
             WHERE pv.tenant_id = n.tenant_id AND pv.effective_at <= now()
             ORDER BY pv.effective_at DESC, pv.id DESC LIMIT 1),
           n.evidence_id
      FROM numbered n
     ORDER BY n.ord
    RETURNING id
), journalled AS (
    INSERT INTO journal_transactions (token)
    SELECT CAST(:journal_token AS uuid)
     WHERE :journal_token IS NOT NULL AND EXISTS (SELECT 1 FROM event)
    RETURNING committed_at
)
SELECT a.ord, (n.ord IS NOT NULL) AS changed, t.sender_name, tp.name AS topic_name, s.email,
       (SELECT committed_at FROM journalled) AS journal_time,
       CASE WHEN n.ord IS NOT NULL AND EXISTS (SELECT 1 FROM journalled)
            THEN (SELECT array_agg(ad.address_key ORDER BY ad.address_key)
                    FROM subscriber_addresses ad
                   WHERE ad.tenant_id = a.tenant_id AND ad.subscriber_id = a.subscriber_id)
       END AS address_keys,
       COALESCE(s.language, t.default_language) AS language
  FROM asked a
  JOIN tenants t ON t.id = a.tenant_id
  JOIN topics tp ON tp.tenant_id = t.id AND tp.id = a.topic_id
  LEFT JOIN subscribers s ON s.tenant_id = t.id AND s.id = a.subscriber_id
  LEFT JOIN numbered n ON n.ord = a.ord
 ORDER BY a.ord;

-- name: correct_import_basis(tenant_id, import_id, new_basis, source, form_text)
-- One correction row per person an import subscribed (found through the evidence rows that
-- name the import; an erased person's evidence no longer does, so erased people get none),
-- each with its own evidence row naming the old and new basis. A rare staff action: the scan
-- of the tenant's imported ledger rows needs no index of its own.
WITH people AS (
    SELECT DISTINCT e.subscriber_id, e.topic_id, e.lawful_basis AS old_basis
      FROM consent_events e
      JOIN consent_evidence v ON v.tenant_id = e.tenant_id AND v.id = e.evidence_id
     WHERE e.tenant_id = :tenant_id AND e.source = 'import' AND e.action = 'subscribe'
       AND v.detail -> 'import_id' = to_jsonb(CAST(:import_id AS bigint))
), evidence AS (
    INSERT INTO consent_evidence (tenant_id, form_text, detail)
    SELECT :tenant_id, :form_text,
           jsonb_build_object('import_id', CAST(:import_id AS bigint),
                              'old_basis', p.old_basis, 'new_basis', CAST(:new_basis AS text),
                              'subscriber_id', p.subscriber_id, 'topic_id', p.topic_id)
      FROM people p
    RETURNING id, CAST(detail ->> 'subscriber_id' AS bigint) AS subscriber_id,
              CAST(detail ->> 'topic_id' AS bigint) AS topic_id
)
INSERT INTO consent_events (tenant_id, subscriber_id, topic_id, action, effect, source,
                            evidence_id, lawful_basis)
SELECT :tenant_id, evidence.subscriber_id, evidence.topic_id, 'correct_basis', 'none', :source,
       evidence.id, :new_basis
  FROM evidence
 ORDER BY evidence.subscriber_id
RETURNING subscriber_id;

-- name: reconfirm_topic(tenant_id, subscriber_id, topic_id)^
-- `optout journal reapply` only: the person's confirmed opt-in, journalled with the lift it
-- made, brought back after a restore; whatever state the backup held becomes confirmed.
INSERT INTO subscriptions (tenant_id, subscriber_id, topic_id, state, confirmed_at)
VALUES (:tenant_id, :subscriber_id, :topic_id, 'confirmed', now())
ON CONFLICT (subscriber_id, topic_id) DO UPDATE
   SET state = 'confirmed', confirmed_at = now(), unsubscribed_at = NULL, updated_at = now()
 WHERE subscriptions.state <> 'confirmed'
RETURNING (xmax = 0) AS created;
