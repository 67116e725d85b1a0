"""A real OpenID Connect provider on loopback for the single sign-on tests (oidc-provider-mock,
a Flask app on authlib, run in its own process on ``localhost`` while Optout runs on 127.0.0.1: two
sites, so a cookie that would not survive the trip shows)."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mailer.config import OidcSettings, Settings

CLIENT_ID = "optout-staff"
CLIENT_SECRET = "a client secret that is never logged"


@dataclass(frozen=True)
class LoopbackProvider:
    issuer: str

    def set_person(self, subject: str, **claims: object) -> None:
        """What the provider says about ``subject`` from the next sign-in on."""
        request = urllib.request.Request(
            f"{self.issuer}/users/{subject}",
            data=json.dumps(claims).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 204

    def settings_for(
        self, settings: Settings, *, second_factor: frozenset[str] = frozenset()
    ) -> Settings:
        oidc = OidcSettings(
            issuer=self.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            second_factor=second_factor,
        )
        return dataclasses.replace(settings, staff=dataclasses.replace(settings.staff, oidc=oidc))


@contextmanager
def loopback_provider() -> Iterator[LoopbackProvider]:
    """The provider in its own process (its authlib warns of deprecations that the tests'
    warnings-as-errors would turn into failures of the provider, not of Optout), stopped by
    its PID; ``--require-nonce``: a request without a nonce is refused, as strict ones do."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "oidc_provider_mock"),
            *("--host", "localhost", "--port", str(port), "--require-nonce"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    issuer = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(
                    f"{issuer}/.well-known/openid-configuration", timeout=2
                ):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the loopback OIDC provider did not start") from None
                time.sleep(0.1)
        yield LoopbackProvider(issuer)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
