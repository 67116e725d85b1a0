"""The ID token checks of staff single sign-on (mailer.staff_oidc), against a provider's
discovery document and keys served over loopback HTTP: only a token signed by the issuer's
published key, for our client, from our issuer, unexpired and carrying the sign-in's nonce is
taken; every other is refused (OIDC Core 3.1.3.7)."""

from __future__ import annotations

import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from mailer import staff_oidc
from mailer.config import OidcSettings
from mailer.errors import SignOnRefused

CLIENT_ID = "optout-staff"
SECRET = "the client secret, which an HMAC-signed token would be keyed with"
NONCE = "the nonce of this sign-in"
KEY = RSAKey.generate_key(2048, parameters={"kid": "signing-1", "use": "sig"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "signing-1", "use": "sig"})


@pytest.fixture
async def provider():
    """A discovery document and a JWKS, served for real over loopback HTTP."""

    async def discovery(request: web.Request) -> web.Response:
        issuer = f"http://{request.host}"
        return web.json_response(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks",
            }
        )

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response({"keys": [KEY.as_dict(private=False)]})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    issuer = str(server.make_url("")).rstrip("/")
    try:
        yield staff_oidc.Provider(
            OidcSettings(issuer=issuer, client_id=CLIENT_ID, client_secret=SECRET)
        )
    finally:
        await server.close()


def claims(provider, **changes):
    now = int(time.time())
    base = {
        "iss": provider.settings.issuer,
        "aud": CLIENT_ID,
        "sub": "ada-sub",
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
        "email": "ada@acme.example",
        "email_verified": True,
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def signed(payload, key=KEY, alg="RS256"):
    return jwt.encode({"alg": alg, "kid": "signing-1"}, payload, key)


async def test_a_right_token_is_taken(provider):
    found = await staff_oidc.check_id_token(provider, signed(claims(provider)), NONCE)
    assert found["sub"] == "ada-sub"


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "http://127.0.0.1:1"},
        {"aud": "another-client"},
        {"aud": [CLIENT_ID, "another-client"]},  # several audiences and no azp naming us
        {"exp": int(time.time()) - 3600},
        {"exp": None},
        {"nonce": "an old nonce"},
        {"nonce": None},
        {"sub": None},
    ],
    ids=["iss", "aud", "aud-without-azp", "expired", "no-exp", "nonce", "no-nonce", "no-sub"],
)
async def test_a_token_with_a_wrong_claim_is_refused(provider, changes):
    with pytest.raises(SignOnRefused):
        await staff_oidc.check_id_token(provider, signed(claims(provider, **changes)), NONCE)


async def test_a_token_signed_with_another_key_or_the_client_secret_is_refused(provider):
    with pytest.raises(SignOnRefused, match="not signed right"):
        await staff_oidc.check_id_token(provider, signed(claims(provider), key=OTHER_KEY), NONCE)
    hmac_key = OctKey.import_key(SECRET)
    forged = jwt.encode({"alg": "HS256"}, claims(provider), hmac_key)
    with pytest.raises(SignOnRefused, match="not signed right"):
        await staff_oidc.check_id_token(provider, forged, NONCE)


async def test_a_discovery_document_naming_another_issuer_is_refused(provider):
    lying = staff_oidc.Provider(
        OidcSettings(
            issuer=provider.settings.issuer + "/tenant",
            client_id=CLIENT_ID,
            client_secret=SECRET,
        )
    )
    with pytest.raises(SignOnRefused):
        await lying.metadata()
