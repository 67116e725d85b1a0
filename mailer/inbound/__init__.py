"""Inbound mail: the aiosmtpd handler and server, matching what comes back to what was sent, DSN and
ARF parsing, complaints, and the bounce and complaint reports relays send by HTTP (SES/SNS,
SendGrid, Postmark)."""
