-- Installation mail to staff and tenants' contacts (issues 24 and 22): invitations, password
-- resets, new-sign-in notices, failing-endpoint reports. It belongs to no tenant and no
-- subscriber, so it has its own small queue beside deliveries (whose rows, keys, suppression
-- re-check and bounce policy are per tenant) and is sent by the worker through the same relays.
-- The payload may hold a single-use link: it is cleared once the mail is sent or given up, so
-- only the queue holds a live link, and only until it goes out.
CREATE TABLE staff_mail (
    id          bigserial PRIMARY KEY,
    recipient   text NOT NULL CHECK (char_length(recipient) BETWEEN 3 AND 254),
    template    text NOT NULL,
    payload     jsonb,
    state       text NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'sent', 'bounced', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    reply       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- The worker's claim reads only what is due.
CREATE INDEX staff_mail_due ON staff_mail (next_at) WHERE state = 'queued';
