-- A final failure (the reporting MTA gave up: Action failed, qmail's "not going to try again")
-- is never followed by delivery, even when its cause was temporary (a 4.x.x status). Such a
-- failure is a soft bounce: final but not permanent. Permanent failures are final too.
ALTER TABLE bounce_events ADD COLUMN final boolean NOT NULL DEFAULT false;
UPDATE bounce_events SET final = true WHERE permanent;
ALTER TABLE bounce_events ADD CONSTRAINT bounce_events_permanent_is_final
    CHECK (final OR NOT permanent);
