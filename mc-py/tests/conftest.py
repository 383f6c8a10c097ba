"""Shared fixtures: certificates made with mc.pki, once per session (key generation is cheap,
but the bundles are reused by many tests)."""

from datetime import datetime, timedelta, timezone

import pytest

import mc


@pytest.fixture(scope="session")
def root():
    """A fresh trust anchor, valid for 10 years from now."""
    return mc.pki.create_trust_anchor()


@pytest.fixture(scope="session")
def other_root():
    """A second, unrelated trust anchor."""
    return mc.pki.create_trust_anchor("other.root.example")


@pytest.fixture(scope="session")
def issuer(root):
    """An issuer signed by `root`."""
    return mc.pki.create_issuer(root)


@pytest.fixture()
def now():
    """The current time, aware UTC, truncated to the second (certificates have no fraction)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def days(n):
    """A timedelta of n days."""
    return timedelta(days=n)
