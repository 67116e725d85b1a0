"""Reading bounces that are not (or not fully) RFC 3464: statuses derived from a notice's
words (derive), and one small reader per family of mail server that writes its own format
(Exchange and Office 365, OpenSMTPD, Apache James, Lotus Notes/Domino, the Japanese carriers,
and notices that name no recipient at all). mailer.inbound.bounce_parse calls them; all are
pure.
"""
