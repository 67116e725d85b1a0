"""Installation mail (staff invitations, password resets, new-sign-in notices, failing-endpoint
reports): queued here in the caller's transaction, composed here, sent by the worker
(mailer/sending/staff_mail.py) from OPTOUT_STAFF_MAIL_FROM. Transactional, to staff or a
tenant's contact: no unsubscribe footer, no suppression check (a hard bounce is recorded).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime

import asyncpg

from mailer.addresses import parse_address
from mailer.db import queries

INVITE = "staff_invite"
RESET = "staff_reset"
NEW_SIGNIN = "staff_new_signin"
ENDPOINT_FAILING = "endpoint_failing"

# Subject and body per template; values are filled with str.format. Staff mail is in English,
# as the workspace is; none of it reaches a subscriber.
TEMPLATES: dict[str, tuple[str, str]] = {
    INVITE: (
        "You are invited to Optout",
        "You have been invited to the Optout workspace at {base_url}.\n\n"
        "Choose your password here (the link works once, for {hours} hours):\n\n{url}\n\n"
        "If you did not expect this invitation, ignore this message.\n",
    ),
    RESET: (
        "Choose a new Optout password",
        "A new password was asked for your Optout account.\n\n"
        "Choose it here (the link works once, for one hour; your sessions end when it is used):"
        "\n\n{url}\n\nIf you did not ask for this, ignore this message: nothing changes.\n",
    ),
    NEW_SIGNIN: (
        "New sign-in to your Optout account",
        "Your Optout account at {base_url} was signed in to at {time} from a browser or place "
        "it was not signed in from before:\n\n  address: {ip}\n  browser: {user_agent}\n\n"
        "If this was not you, ask an admin to disable the account, then reset the password.\n",
    ),
    ENDPOINT_FAILING: (
        "Optout: event endpoint failing for tenant {tenant}",
        "Every delivery to the event endpoint\n\n  {url}\n\nof tenant {tenant} has failed "
        "since {since}.\n\nOptout keeps retrying each event for up to {retry_days} days, then "
        "marks it abandoned (staff can redeliver it). The endpoint's delivery log in the "
        "workspace or `optout events endpoint log` shows the errors.\n\nThis is the only mail "
        "about this failure; the next one comes if the endpoint fails again after a success.\n",
    ),
}


async def enqueue(
    conn: asyncpg.Connection, *, recipient: str, template: str, values: Mapping[str, object]
) -> int:
    """Queue one message in the caller's transaction (sent once it commits); its id."""
    if template not in TEMPLATES:
        raise ValueError(f"no staff mail template {template!r}")
    address = parse_address(recipient).as_given
    mail_id: int = await queries().staff_mail.enqueue(
        conn, recipient=address, template=template, payload={k: str(v) for k, v in values.items()}
    )
    await queries().outbox.notify_work(conn)
    return mail_id


def compose(
    template: str, values: Mapping[str, str], *, mail_from: str, recipient: str, now: dt.datetime
) -> tuple[str, bytes]:
    """The message id and the message's bytes (CRLF), unsigned."""
    subject, body = TEMPLATES[template]
    domain = mail_from.rpartition("@")[2]
    message_id = f"<staff.{secrets.token_hex(12)}@{domain}>"
    msg = EmailMessage()
    msg["From"] = f"Optout <{mail_from}>"
    msg["To"] = recipient
    msg["Subject"] = subject.format_map(values)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    # RFC 3834: an automatic message, so out-of-office replies stay away.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body.format_map(values))
    return message_id, msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
