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


def assert_releases_gil(make_call, min_seconds=0.3):
    """Asserts that a long native call lets other Python threads run.

    `make_call(scale)` returns a zero-argument callable whose work grows with `scale`; the scale
    doubles until one call takes `min_seconds`. Then a spinner thread records timestamps while
    the call runs. Were the GIL held, the spinner could run only around the call (at most one
    switch interval at each end), never in its middle half.
    """
    import sys
    import threading
    import time

    scale = 1
    while True:
        call = make_call(scale)
        start = time.monotonic()
        call()
        if time.monotonic() - start >= min_seconds:
            break
        scale *= 2

    stamps, done = [], threading.Event()

    def spin():
        while not done.is_set():
            stamps.append(time.monotonic())

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.05)
        begin = time.monotonic()
        result = call()
        end = time.monotonic()
    finally:
        done.set()
        spinner.join()
        sys.setswitchinterval(old)
    quarter = (end - begin) / 4
    middle = [t for t in stamps if begin + quarter <= t <= end - quarter]
    assert middle, "no Python code ran during the call: the GIL was held"
    return result
