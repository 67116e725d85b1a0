"""Property tests for what staff sign-in parses: the actor string naming an account, TOTP codes,
the sealed TOTP secrets, and the common-password check."""

from __future__ import annotations

import pyotp
from hypothesis import given
from hypothesis import strategies as st

from mailer.api_tokens import ROLES, Principal
from mailer.audit import account_of
from mailer.passwords import MIN_LENGTH, check_new, common_passwords
from mailer.totp import STEP, SecretBox, matching_step

KEY = b"k" * 40
SECRET = pyotp.random_base32()


@given(st.integers(1, 2**62), st.sampled_from(ROLES), st.integers(1, 2**62))
def test_an_account_actor_names_its_account_and_a_token_actor_none(account, role, token):
    assert account_of(Principal(None, role, None, account).actor) == account
    assert account_of(Principal(token, role, None).actor) is None


@given(st.text(max_size=40))
def test_any_other_actor_names_no_account_or_the_digits_it_gives(actor):
    found = account_of(actor)
    assert found is None or actor.startswith(f"account:{found}")


@given(st.text(max_size=12))
def test_only_the_code_of_this_or_a_neighbouring_step_matches(code):
    now = 1_700_000_000.0
    step = matching_step(SECRET, code, now)
    totp = pyotp.TOTP(SECRET)
    if step is not None:
        assert abs(step - int(now // STEP)) <= 1
        assert totp.at(step * STEP) == code.strip().replace(" ", "")


@given(st.integers(-1, 1))
def test_the_codes_of_the_step_and_its_neighbours_match(offset):
    now = 1_700_000_000.0
    code = pyotp.TOTP(SECRET).at(now + offset * STEP)
    assert matching_step(SECRET, code, now) == int(now // STEP) + offset


@given(st.integers(1, 2**40), st.integers(1, 2**40))
def test_a_sealed_secret_opens_only_for_its_own_account(account, other):
    box = SecretBox(KEY)
    sealed = box.seal(account, SECRET)
    assert SECRET.encode() not in sealed
    assert box.open(account, sealed) == SECRET
    if other != account:
        assert box.open(other, sealed) is None
    assert SecretBox(b"x" * 40).open(account, sealed) is None


@given(st.sampled_from(sorted(p for p in common_passwords() if len(p) >= MIN_LENGTH)))
def test_a_common_password_is_refused_in_any_case(password):
    for variant in (password, password.upper(), password.title()):
        try:
            check_new(variant)
        except Exception as exc:
            assert "common passwords" in str(exc)
        else:
            raise AssertionError(f"accepted {variant!r}")
