-- The outbox: deliveries of campaign and transactional mail (the worker claims from here).

-- name: enqueue_transactional(tenant_id, subscriber_id, recipient, recipient_key, template, payload, priority)$
-- Transactional mail (confirmations, single-use data links, test sends) shares the outbox
-- with campaigns, so one worker path sends, retries and records everything.
INSERT INTO deliveries (tenant_id, kind, subscriber_id, recipient, recipient_key, template,
                        payload, priority)
VALUES (:tenant_id, 'transactional', :subscriber_id, :recipient, :recipient_key, :template,
        :payload, :priority)
RETURNING id;

-- name: notify_work()$
-- Wakes idle workers (LISTEN optout_work); polling keeps them correct without it.
SELECT pg_notify('optout_work', '');
