-- Set-based sign-up for imports (mailer.consent.subscribe_batch): the same rules as
-- consent.subscribe for a non-self source, one statement per step for a whole batch.
-- Rows are sorted by key/id before writing, so two batches lock rows in one order.

-- name: suppressions_for(tenant_id, keys)
SELECT address_key, scope FROM suppressions
 WHERE tenant_id = :tenant_id AND address_key = ANY(CAST(:keys AS bytea[]));

-- name: set_languages(tenant_id, ids, languages)!
-- The import's language column (issue 19): the person's pages and mail follow it. Profile
-- data, not consent: no ledger row. Ids are sorted by the caller, like every batch write.
UPDATE subscribers s SET language = u.language
  FROM unnest(CAST(:ids AS bigint[]), CAST(:languages AS text[])) AS u(id, language)
 WHERE s.tenant_id = :tenant_id AND s.id = u.id;

-- name: upsert_subscribers(tenant_id, emails, keys, names)
-- The no-op update takes the row lock, as upsert_subscriber does; keys are unique per call.
-- A new person's age attestation is written with the row (a new person always gets a new
-- subscription, which is when subscribe() records it); `created` tells the caller which
-- existing people still need record_age_attestations.
INSERT INTO subscribers (tenant_id, email, email_key, name, age_attested_at)
SELECT :tenant_id, u.email, u.key, u.name, now()
  FROM unnest(CAST(:emails AS text[]), CAST(:keys AS bytea[]), CAST(:names AS text[]))
       AS u(email, key, name)
 ORDER BY u.key
ON CONFLICT (tenant_id, email_key) DO UPDATE SET updated_at = subscribers.updated_at
RETURNING id, email_key, (xmax = 0) AS created;

-- name: insert_subscriptions(tenant_id, topic_id, subscriber_ids, state)
-- DO NOTHING leaves existing subscriptions (pending, confirmed or unsubscribed) untouched:
-- an import never re-subscribes someone who left.
INSERT INTO subscriptions (tenant_id, subscriber_id, topic_id, state, confirmed_at)
SELECT :tenant_id, s.id, :topic_id, :state,
       CASE WHEN :state = 'confirmed' THEN now() END
  FROM unnest(CAST(:subscriber_ids AS bigint[])) AS s(id)
 ORDER BY s.id
ON CONFLICT (subscriber_id, topic_id) DO NOTHING
RETURNING subscriber_id;

-- name: existing_states(tenant_id, topic_id, subscriber_ids)
SELECT subscriber_id, state FROM subscriptions
 WHERE tenant_id = :tenant_id AND topic_id = :topic_id
   AND subscriber_id = ANY(CAST(:subscriber_ids AS bigint[]));

-- name: record_age_attestations(tenant_id, ids)!
UPDATE subscribers SET age_attested_at = now(), updated_at = now()
 WHERE tenant_id = :tenant_id AND id = ANY(CAST(:ids AS bigint[]));

-- name: insert_events_with_evidence(tenant_id, topic_id, subscriber_ids, details, form_text, effect, source, policy_version_id, lawful_basis)!
-- One evidence row per person (it is erased with that person), then the ledger row pointing
-- at it. Each detail carries a "line" unique within the call (the import's line number):
-- that is how an evidence row is matched back to its person, with no reliance on the order
-- of RETURNING.
WITH input AS (
    SELECT u.subscriber_id, CAST(u.detail AS jsonb) AS detail
      FROM unnest(CAST(:subscriber_ids AS bigint[]), CAST(:details AS text[]))
           AS u(subscriber_id, detail)
), evidence AS (
    INSERT INTO consent_evidence (tenant_id, form_text, detail)
    SELECT :tenant_id, :form_text, input.detail FROM input
    RETURNING id, detail ->> 'line' AS line
)
INSERT INTO consent_events (tenant_id, subscriber_id, topic_id, action, effect, source,
                            policy_version_id, evidence_id, lawful_basis)
SELECT :tenant_id, input.subscriber_id, :topic_id, 'subscribe', :effect, :source,
       :policy_version_id, evidence.id, :lawful_basis
  FROM input JOIN evidence ON evidence.line = input.detail ->> 'line'
 ORDER BY input.subscriber_id;
