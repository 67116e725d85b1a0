"""POST /hooks/{relay} on the real app: SES (through SNS), SendGrid and Postmark reports
suppress the right person through the same bounce policy and complaint handling; a wrong
secret gets 401 and changes nothing."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from mailer.addresses import suppression_key, tenant_hash_key
from mailer.inbound.sns import signed_string
from tests.support.inbound_world import FIXTURES, make_world, probes, rows
from unsubscribe_web.api.hooks import SNS_CERTS, SnsCertificates
from unsubscribe_web.app import create_app

CERT_URL = (
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
)

SECRETS = {
    "ses": "ses-secret-0123456789abcdef",
    "sendgrid": "sendgrid-secret-0123456789",
    "postmark": "postmark-secret-0123456789",
}


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


@cache
def sns_signer():
    """A stand-in for AWS's SNS signing key and the certificate SNS would serve for it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def sign_sns(data: bytes, version: str = "1") -> bytes:
    message = json.loads(data)
    message["SignatureVersion"] = version
    text = signed_string(message)
    assert text is not None
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = sns_signer()[0].sign(text, padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(signature).decode()
    return json.dumps(message).encode()


@pytest.fixture
def fetched():
    return []


@pytest.fixture
async def client(aiohttp_client, settings, fetched):
    inbound = dataclasses.replace(settings.inbound, hook_secrets=tuple(SECRETS.items()))
    app = create_app(dataclasses.replace(settings, inbound=inbound))

    async def fetch(url: str) -> bytes:  # the one fake: AWS's certificate server
        fetched.append(url)
        return sns_signer()[1] if url == CERT_URL else b"not a certificate"

    app[SNS_CERTS] = SnsCertificates(fetch)
    return await aiohttp_client(app)


def auth(secret: str) -> dict[str, str]:
    token = base64.b64encode(f"relay:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def body(name: str, **values: str) -> bytes:
    """A webhook fixture with its placeholders filled; SNS messages signed as SNS would."""
    text = (FIXTURES / "hooks" / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    data = text.encode()
    return sign_sns(data) if name.startswith(("ses_", "sns_")) else data


async def post(client, relay, data, secret=None):
    headers = {"Content-Type": "application/json"}
    if secret is not False:
        headers |= auth(SECRETS[relay] if secret is None else secret)
    return await client.post(f"/hooks/{relay}", data=data, headers=headers)


CASES = [
    ("ses", "ses_bounce.json", "bounce", ("all", "hard_bounce")),
    ("ses", "ses_complaint.json", "complaint", ("all", "complaint")),
    ("sendgrid", "sendgrid_bounce.json", "bounce", ("all", "hard_bounce")),
    ("sendgrid", "sendgrid_spamreport.json", "complaint", ("all", "complaint")),
    ("postmark", "postmark_bounce.json", "bounce", ("all", "hard_bounce")),
    ("postmark", "postmark_spam_complaint.json", "complaint", ("all", "complaint")),
]


@pytest.mark.parametrize("relay, name, kind, suppression", CASES)
async def test_relay_report_suppresses_the_right_person(
    relay, name, kind, suppression, world, conn, settings, client
):
    address = "gone@example.org"
    person = await world.person(address)
    bystander = await world.person("stays@example.org")
    campaign = await world.campaign()
    message_id = f"<c{campaign}.s{person}@news.example.com>"
    delivery = await world.delivery(campaign, person, message_id=message_id)
    await world.delivery(campaign, bystander, message_id="<other@news.example.com>")
    data = body(name, EMAIL=address, MESSAGE_ID=message_id, VERP=world.bounce_address(delivery))
    response = await post(client, relay, data)
    assert response.status == 200, await response.text()
    assert (await response.json())["applied"] == 1

    key = suppression_key(tenant_hash_key(settings.hash_key, world.tenant_id), address)
    suppressions = await rows(probes().suppressions(conn))
    assert [(bytes(s["address_key"]), s["scope"], s["reason"]) for s in suppressions] == [
        (key, *suppression)
    ]
    events = [e for e in await rows(probes().events(conn)) if e["kind"] != "webhook"]
    assert [(e["kind"], e["subscriber_id"]) for e in events] == [(kind, person)]
    if kind == "bounce":
        bounces = await rows(probes().bounce_events(conn))
        assert [(b["source"], b["status"], b["permanent"]) for b in bounces] == [
            ("webhook", "5.1.1", True)
        ]
        assert bounces[0]["delivery_id"] == delivery
    # A relay that did not see our 200 sends the same body again: applied once.
    before = await probes().state_digest(conn)
    again = await post(client, relay, data)
    assert again.status == 200
    assert (await again.json())["recorded"] == 0
    assert await probes().state_digest(conn) == before


async def test_wrong_or_missing_secret_gets_401_and_changes_nothing(world, conn, client):
    address = "gone@example.org"
    person = await world.person(address)
    campaign = await world.campaign()
    message_id = f"<c{campaign}.s{person}@news.example.com>"
    delivery = await world.delivery(campaign, person, message_id=message_id)
    before = await probes().state_digest(conn)
    for relay, name, _kind, _suppression in CASES:
        data = body(name, EMAIL=address, MESSAGE_ID=message_id, VERP=world.bounce_address(delivery))
        other_relay = next(r for r in SECRETS if r != relay)
        for secret in (SECRETS[relay] + "x", SECRETS[other_relay], "", False):
            response = await post(client, relay, data, secret=secret)
            assert response.status == 401, (name, secret)
            assert response.headers["WWW-Authenticate"].startswith("Basic")
        bearer = await client.post(
            f"/hooks/{relay}", data=data, headers={"Authorization": f"Bearer {SECRETS[relay]}"}
        )
        assert bearer.status == 401
    assert await probes().state_digest(conn) == before
    assert await rows(probes().events(conn)) == []


async def test_unknown_or_unconfigured_relay_is_404(client, aiohttp_client, settings):
    assert (await post(client, "mailgun", b"{}", secret="whatever-secret-123")).status == 404
    bare = await aiohttp_client(create_app(settings))  # no secrets configured at all
    assert (await post(bare, "ses", b"{}", secret=SECRETS["ses"])).status == 404


@pytest.mark.parametrize(
    "relay, data",
    [
        ("ses", b"not json"),
        ("ses", "signed"),  # a genuine SNS notification whose Message is not SES JSON
        ("sendgrid", b'{"event": "bounce"}'),
        ("postmark", b"[1, 2, 3]"),
        ("sendgrid", b"\xff\xfe garbage"),
    ],
)
async def test_malformed_body_is_400_and_changes_nothing(relay, data, world, conn, client):
    if data == "signed":
        data = sign_sns(
            json.dumps(
                {"Type": "Notification", "Message": "not json either", "MessageId": "m1",
                 "Timestamp": "2024-06-04T08:15:04.123Z", "TopicArn": "arn:aws:sns:x",
                 "SigningCertURL": CERT_URL}
            ).encode()
        )  # fmt: skip
    before = await probes().state_digest(conn)
    response = await post(client, relay, data)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_report"
    assert await probes().state_digest(conn) == before


async def test_sns_subscription_confirmation_is_kept_not_fetched(world, conn, client):
    before = await probes().state_digest(conn)
    response = await post(client, "ses", body("sns_subscription_confirmation.json"))
    assert response.status == 200
    events = await rows(probes().events(conn))
    assert [(e["kind"], e["outcome"]) for e in events] == [("webhook", "ignored")]
    assert b"SubscribeURL" in events[0]["raw"]
    assert await probes().state_digest(conn) == before


async def test_report_for_nobody_we_know_is_kept_unmatched(world, conn, client):
    before = await probes().state_digest(conn)
    data = body(
        "postmark_bounce.json", EMAIL="stranger@example.net", MESSAGE_ID="<nope@example.net>"
    )
    response = await post(client, "postmark", data)
    assert response.status == 200
    assert await probes().state_digest(conn) == before
    events = await rows(probes().events(conn))
    assert [(e["kind"], e["outcome"]) for e in events] == [("bounce", "unmatched")]


async def test_sns_signature_is_checked(world, conn, client, fetched):
    """SES reports come through SNS: a message whose signature does not verify, or whose
    certificate is not on an AWS SNS host, is refused (401) and changes nothing."""
    address = "gone@example.org"
    person = await world.person(address)
    campaign = await world.campaign()
    message_id = f"<c{campaign}.s{person}@news.example.com>"
    await world.delivery(campaign, person, message_id=message_id)
    good = body("ses_bounce.json", EMAIL=address, MESSAGE_ID=message_id, VERP="")
    before = await probes().state_digest(conn)

    tampered = json.loads(good)
    tampered["Message"] = tampered["Message"].replace(address, "someone-else@example.org")
    elsewhere = json.loads(good)
    elsewhere["SigningCertURL"] = "https://attacker.example/sns.pem"
    unsigned = json.loads(good)
    del unsigned["Signature"]
    for data in (tampered, elsewhere, unsigned):
        response = await post(client, "ses", json.dumps(data).encode())
        assert response.status == 401
    assert "https://attacker.example/sns.pem" not in fetched
    assert await probes().state_digest(conn) == before
    assert await rows(probes().events(conn)) == []

    version_2 = sign_sns(good, version="2")
    assert (await post(client, "ses", version_2)).status == 200
    assert fetched == [CERT_URL]  # fetched once, then cached
    assert len(await rows(probes().suppressions(conn))) == 1


@pytest.mark.parametrize("relay", ["sendgrid", "postmark", "ses"])
@pytest.mark.parametrize("depth", [65, 100_000])
async def test_deeply_nested_json_to_an_authenticated_hook_is_400(
    relay, depth, world, conn, client
):
    """Issue 14: nested brackets past the parser's recursion (a RecursionError, once a 500)
    or past our bound of 64 levels are a clear 400 that changes nothing."""
    data = b"[" * depth + b"]" * depth
    if relay == "ses":
        data = b'{"Type": "Notification", "x": ' + data + b"}"
    before = await probes().state_digest(conn)
    response = await post(client, relay, data)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_report"
    assert await probes().state_digest(conn) == before
