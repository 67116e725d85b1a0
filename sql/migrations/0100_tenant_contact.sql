-- Contact details besides the postal address (CASL, CRTC Regulations s.2; STANDARDS 42): a
-- web page, an email address or a telephone number, shown in the footer of every commercial
-- message and on the tenant's public pages. A marketing campaign needs at least one of them
-- (mailer/sending/campaigns.py checks it before anything is queued); existing tenants keep
-- none until `optout tenant update` sets one, and their marketing mail waits until then.
ALTER TABLE tenants
    ADD COLUMN contact_web   text CHECK (char_length(contact_web) BETWEEN 1 AND 500),
    ADD COLUMN contact_email text CHECK (char_length(contact_email) BETWEEN 3 AND 254),
    ADD COLUMN contact_phone text CHECK (char_length(contact_phone) BETWEEN 3 AND 40);
