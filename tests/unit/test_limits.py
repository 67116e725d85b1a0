"""The keys of mailer.limits: a limit row's hash depends on the limit and the subject, is
never the subject, and is never a suppression hash of the same address."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.addresses import suppression_key, tenant_hash_key
from mailer.errors import ConfigError
from mailer.limits import Limit, RateLimits
from tests.conftest import TEST_HASH_KEY

LIMITS = RateLimits(TEST_HASH_KEY)
A = Limit("signup_ip", count=20, window=600)
B = Limit("dashboard_login", count=20, window=600)


@given(st.text(min_size=0, max_size=200), st.text(min_size=0, max_size=200))
def test_subject_keys_are_32_bytes_and_tell_subjects_and_limits_apart(one, other):
    key = LIMITS.subject_key(A, one)
    assert len(key) == 32
    assert key == LIMITS.subject_key(A, one)
    assert key != LIMITS.subject_key(B, one)
    assert (key == LIMITS.subject_key(A, other)) == (one == other)
    assert one.encode() not in key or len(one) < 4


@given(st.emails())
def test_a_limit_hash_is_not_the_suppression_hash_of_the_address(email):
    tenant_key = tenant_hash_key(TEST_HASH_KEY, 1)
    assert LIMITS.subject_key(A, email) != suppression_key(tenant_key, email)


def test_bad_limits_and_keys_are_refused_with_one_line():
    for name, count, window in (("Bad-Name", 1, 1), ("x", 0, 1), ("x", 1, 0)):
        with pytest.raises(ValueError):
            Limit(name, count=count, window=window)
    with pytest.raises(ConfigError):
        RateLimits(b"short")
    assert Limit("x", count=1, window=0.2).retry_after == 1
