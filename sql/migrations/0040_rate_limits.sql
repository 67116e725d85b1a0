-- Rate limits shared by every web process (sign-ups per IP and per address, dashboard
-- sign-ins, data links): one row per limit and subject, counted in a fixed window.
-- subject_key is a keyed hash (mailer/limits.py), never the IP or the address itself;
-- rows whose window has ended are deleted by the worker's regular housekeeping.
CREATE TABLE rate_limits (
    name text NOT NULL CHECK (name ~ '^[a-z_]{1,40}$'),
    subject_key bytea NOT NULL CHECK (octet_length(subject_key) = 32),
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    hits integer NOT NULL CHECK (hits > 0),
    PRIMARY KEY (name, subject_key)
);

-- The purge deletes by window_end.
CREATE INDEX rate_limits_window_end ON rate_limits (window_end);
