-- The request queue (issue 18): a data request is closed as done only by its action, which
-- leaves a receipt (what was done: counts and ids, never personal data); otherwise it is
-- rejected with a reason the requester is told, or extended once with a reason mailed.
ALTER TABLE data_requests
    ADD COLUMN receipt          jsonb,
    ADD COLUMN rejection_reason text,
    ADD COLUMN rejected_at      timestamptz,
    ADD COLUMN rejected_by      text;

-- Requests closed before receipts existed keep a receipt that says so.
UPDATE data_requests SET receipt = '{"closed_before_receipts": true}' WHERE status = 'done';

ALTER TABLE data_requests
    ADD CONSTRAINT data_requests_done_has_receipt CHECK ((status = 'done') = (receipt IS NOT NULL));

-- A client's removal list: the keyed hash of each address the client's CSV named (the
-- addresses themselves are never stored: the hash finds the subscriber and the suppression,
-- and stays meaningless once the person is erased). One row per address and request.
CREATE TABLE client_removal_addresses (
    data_request_id  bigint NOT NULL REFERENCES data_requests (id),
    address_key      bytea NOT NULL CHECK (length(address_key) = 32),
    line             integer NOT NULL,
    PRIMARY KEY (data_request_id, address_key)
);
