"""Staff single sign-on by OpenID Connect (issue 24 item 5): the authorization code flow with
PKCE (S256) against the installation's one issuer, the ID token's iss/aud/exp/nonce checked
(joserfc), and the account it names: linked once by a verified email, then by (iss, sub) only.

No account is ever created here and no role comes from the provider: Optout's accounts and
roles decide. The sign-in under way (state, nonce, PKCE verifier) is kept in Postgres behind a
random id, so nothing the browser holds can be replayed or forged into another person's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import asyncpg
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from mailer import audit
from mailer.config import OidcSettings
from mailer.db import queries
from mailer.errors import SignOnRefused

TRANSACTION_SECONDS = 600.0  # the time to sign in at the provider
METADATA_SECONDS = 3600.0  # how long discovery and keys are trusted before a refetch
HTTP_SECONDS = 10.0
MAX_ID_CHARS = 100
# Signatures we accept from a provider; "none" and the HMAC family (keyed with the client
# secret, which we also hold) are never among them.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
LEEWAY_SECONDS = 60  # clock skew tolerated on exp and iat

EXPIRED = "Your single sign-on took too long or was already used. Sign in again."
NOT_LINKED = (
    "The provider's account does not match an Optout staff account. Ask an admin to invite "
    "you with the address your provider confirms."
)
UNVERIFIED = (
    "Your provider has not verified that email address, so it cannot link your account. "
    "Sign in with your password, or verify the address at the provider."
)


@dataclass(frozen=True, slots=True)
class Identity:
    """What a checked ID token says about the person."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    second_factor: bool  # the provider's amr/acr count as a second factor (a setting)


def _hash(raw: str) -> bytes:
    return hashlib.sha256(raw.encode()).digest()


class Provider:
    """The issuer's discovery document and signing keys, fetched on first use and cached."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._fetched = 0.0

    async def _get_json(self, http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
        try:
            async with http.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise SignOnRefused(f"The sign-on provider answered {response.status}.")
                found = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise SignOnRefused("The sign-on provider cannot be reached.") from error
        if not isinstance(found, dict):
            raise SignOnRefused("The sign-on provider answered something unexpected.")
        return found

    async def metadata(self, *, refresh: bool = False) -> dict[str, Any]:
        stale = time.monotonic() - self._fetched > METADATA_SECONDS
        if self._metadata is None or self._keys is None or stale or refresh:
            timeout = aiohttp.ClientTimeout(total=HTTP_SECONDS)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                found = await self._get_json(
                    http, f"{self.settings.issuer}/.well-known/openid-configuration"
                )
                # OpenID Connect Discovery 1.0 section 4.3: the document names its own issuer.
                if found.get("issuer") != self.settings.issuer:
                    raise SignOnRefused("The sign-on provider names another issuer.")
                for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(found.get(key), str):
                        raise SignOnRefused(f"The sign-on provider publishes no {key}.")
                keys = await self._get_json(http, found["jwks_uri"])
            try:
                self._keys = KeySet.import_key_set(keys)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as error:
                raise SignOnRefused("The sign-on provider's keys cannot be read.") from error
            self._metadata = found
            self._fetched = time.monotonic()
        return self._metadata

    async def keys(self) -> KeySet:
        await self.metadata()
        assert self._keys is not None
        return self._keys


async def begin(conn: asyncpg.Connection, provider: Provider, redirect_uri: str) -> tuple[str, str]:
    """Start a sign-in: returns (the id for the short-lived cookie, the provider's URL)."""
    metadata = await provider.metadata()
    raw = secrets.token_urlsafe(32)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # RFC 7636: 43 to 128 characters
    # Abandoned sign-ins go here, so the table holds at most the last few minutes' starts.
    await queries().staff_oidc.purge_expired(conn)
    await queries().staff_oidc.begin(
        conn,
        id_hash=_hash(raw),
        state=state,
        nonce=nonce,
        verifier=verifier,
        seconds=TRANSACTION_SECONDS,
    )
    url = add_params_to_uri(
        metadata["authorization_endpoint"],
        [
            ("response_type", "code"),
            ("client_id", provider.settings.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", "openid email profile"),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", create_s256_code_challenge(verifier)),
            ("code_challenge_method", "S256"),
        ],
    )
    return raw, url


async def finish(
    conn: asyncpg.Connection,
    provider: Provider,
    raw: str | None,
    params: dict[str, str],
    redirect_uri: str,
) -> Identity:
    """The provider sent the browser back: check state, trade the code (with the PKCE
    verifier) for an ID token and check it. The sign-in under way is spent either way."""
    if not raw or len(raw) > MAX_ID_CHARS:
        raise SignOnRefused(EXPIRED)
    found = await queries().staff_oidc.take(conn, id_hash=_hash(raw))
    if found is None or not found["live"]:
        raise SignOnRefused(EXPIRED)
    if not hmac.compare_digest(params.get("state", "").encode(), found["state"].encode()):
        raise SignOnRefused(EXPIRED)
    if "error" in params or not params.get("code"):
        raise SignOnRefused("The sign-on provider did not sign you in.")
    id_token = await _trade_code(provider, params["code"], found["verifier"], redirect_uri)
    claims = await check_id_token(provider, id_token, found["nonce"])
    amr = claims.get("amr")
    methods = {value for value in amr if isinstance(value, str)} if isinstance(amr, list) else set()
    acr = claims.get("acr")
    if isinstance(acr, str):
        methods.add(acr)
    email = claims.get("email")
    return Identity(
        issuer=provider.settings.issuer,
        subject=str(claims["sub"]),
        email=email if isinstance(email, str) else None,
        # Only a JSON true counts: "true" or 1 from a sloppy provider does not.
        email_verified=claims.get("email_verified") is True,
        second_factor=bool(methods & provider.settings.second_factor),
    )


async def _trade_code(provider: Provider, code: str, verifier: str, redirect_uri: str) -> str:
    metadata = await provider.metadata()
    settings = provider.settings
    timeout = aiohttp.ClientTimeout(total=HTTP_SECONDS)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(
                metadata["token_endpoint"],
                data=form,
                headers={"Authorization": _basic_auth(settings)},
                allow_redirects=False,
            ) as response,
        ):
            answer = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise SignOnRefused("The sign-on provider cannot be reached.") from error
    if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("id_token"), str):
        raise SignOnRefused("The sign-on provider refused the sign-in code.")
    token: str = answer["id_token"]
    return token


def _basic_auth(settings: OidcSettings) -> str:
    """client_secret_basic, the method every provider takes: RFC 6749 section 2.3.1 form-encodes
    both parts before Base64, so a secret with ':' or '%' still arrives whole."""
    pair = f"{quote_plus(settings.client_id)}:{quote_plus(settings.client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


async def check_id_token(provider: Provider, id_token: str, nonce: str) -> dict[str, Any]:
    """Signature, then iss, aud (and azp), exp, iat, nonce and sub (OIDC Core 3.1.3.7)."""
    client_id = provider.settings.client_id
    try:
        token = jwt.decode(id_token, await provider.keys(), algorithms=list(ALGORITHMS))
    except JoseError:
        # Perhaps the provider rotated its keys since we fetched them: once more, fresh.
        await provider.metadata(refresh=True)
        try:
            token = jwt.decode(id_token, await provider.keys(), algorithms=list(ALGORITHMS))
        except JoseError as error:
            raise SignOnRefused("The sign-on provider's answer is not signed right.") from error
    claims: dict[str, Any] = dict(token.claims)
    registry = jwt.JWTClaimsRegistry(
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": provider.settings.issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except JoseError as error:
        raise SignOnRefused("The sign-on provider's answer does not check out.") from error
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
        raise SignOnRefused("The sign-on provider's answer does not check out.")
    return claims


async def account_for(conn: asyncpg.Connection, identity: Identity) -> asyncpg.Record:
    """The staff account this identity signs in as (id, status, totp_secret). Linked by
    (iss, sub) when it was before; otherwise, once, by a verified email matching an active or
    invited account. The provider's email is never looked at again after the link."""
    q = queries().staff_oidc
    async with conn.transaction():
        linked = await q.linked_account(conn, issuer=identity.issuer, subject=identity.subject)
        if linked is not None:
            if linked["status"] != "active":
                raise SignOnRefused(NOT_LINKED)
            return linked
        if not identity.email:
            raise SignOnRefused(NOT_LINKED)
        if not identity.email_verified:
            raise SignOnRefused(UNVERIFIED)
        account = await queries().staff.account_by_email(conn, email=identity.email)
        if account is None or account["status"] not in ("active", "invited"):
            raise SignOnRefused(NOT_LINKED)
        made = await q.link(
            conn,
            issuer=identity.issuer,
            subject=identity.subject,
            account_id=account["id"],
            linked_email=identity.email,
        )
        if made is None:
            # The account is linked to another subject at this issuer: a second identity with
            # the same address does not take it over.
            raise SignOnRefused(NOT_LINKED)
        if account["status"] == "invited":
            await q.activate_invited(conn, id=account["id"])
            await queries().staff.retire_links(conn, account_id=account["id"], purpose="invite")
        await audit.record(
            conn,
            actor=f"account:{account['id']}",
            account_id=account["id"],
            action="staff.sso_link",
            target_type="staff_account",
            target_id=account["id"],
            detail={"issuer": identity.issuer, "subject": identity.subject},
        )
        found = await q.linked_account(conn, issuer=identity.issuer, subject=identity.subject)
    assert found is not None
    return found
