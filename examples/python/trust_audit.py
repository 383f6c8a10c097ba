#!/usr/bin/env python3
"""Audit the trust anchors of two clusters with the mc Python module.

Reads the Linkerd trust anchors of two kubeconfig contexts (the ``values`` key of the
``linkerd-config`` ConfigMap in the control-plane namespace), then prints

- each cluster's anchors (subject, SHA-256 fingerprint, expiry),
- whether the clusters share an anchor (multicluster mTLS needs at least one in common),
- which anchors expire within 90 days (``--days``), expired ones included.

Exit status: 0 when the clusters share an anchor and none expires soon, 1 when they share none
or an anchor expires within the window, 2 when an anchor set cannot be read.

Usage::

    python examples/python/trust_audit.py east west [--kubeconfig PATH] [--kubectl PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import mc


class AuditError(Exception):
    """An anchor set cannot be read; the message says which and why."""


def read_values(kubectl: str, kubeconfig: str | None, context: str, namespace: str) -> str:
    """The ``values`` YAML of the linkerd-config ConfigMap in ``context``."""
    cmd = [kubectl]
    if kubeconfig:
        cmd += ["--kubeconfig", kubeconfig]
    cmd += ["--context", context, "--namespace", namespace, "get", "configmap", "linkerd-config",
            "--output", "jsonpath={.data.values}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise AuditError(f"{context}: cannot run {kubectl}: {e}") from e
    if out.returncode != 0:
        raise AuditError(f"{context}: kubectl failed: {out.stderr.strip()}")
    if not out.stdout.strip():
        raise AuditError(f"{context}: configmap {namespace}/linkerd-config has no 'values' key")
    return out.stdout


def read_bundle(values: str, context: str) -> tuple[mc.TrustBundle, mc.LinkerdConfig]:
    """The cluster's trust bundle (expired anchors included: this is an audit)."""
    try:
        config = mc.LinkerdConfig.from_values_yaml(values)
        return config.trust_bundle(check_validity=False), config
    except mc.Error as e:
        raise AuditError(f"{context}: {e}") from e


def describe(anchor: mc.Anchor, now: datetime) -> str:
    """One line about an anchor."""
    left = anchor.not_after - now
    when = f"expired {-left.days} day(s) ago" if left < timedelta(0) else f"in {left.days} day(s)"
    return (f"{anchor.subject}  sha256 {anchor.fingerprint[:23]}…  "
            f"expires {anchor.not_after:%Y-%m-%d %H:%M:%S}Z ({when})")


def audit(args: argparse.Namespace) -> int:
    now = datetime.now(timezone.utc)
    window = timedelta(days=args.days)
    bundles = {}
    for context in (args.context_a, args.context_b):
        values = read_values(args.kubectl, args.kubeconfig, context, args.namespace)
        bundle, config = read_bundle(values, context)
        bundles[context] = bundle
        print(f"{context}: {len(bundle)} trust anchor(s), trust domain {config.trust_domain}")
        for anchor in bundle.anchors:
            print(f"  {describe(anchor, now)}")

    a, b = bundles[args.context_a], bundles[args.context_b]
    common = a.diff(b).common
    if common:
        print(f"SHARED: {args.context_a} and {args.context_b} share {len(common)} trust anchor(s): "
              + ", ".join(anchor.subject for anchor in common))
    else:
        print(f"NOT SHARED: {args.context_a} and {args.context_b} share no trust anchor; "
              "mTLS between them will fail (distribute a bundle holding both roots)")

    expiring = [(context, anchor) for context, bundle in bundles.items()
                for anchor in bundle.expiring_within(window, now=now)]
    print(f"Expiring within {args.days} days: {len(expiring)}")
    for context, anchor in expiring:
        print(f"  {context}: {describe(anchor, now)}")
    return 0 if common and not expiring else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("context_a", help="first kubeconfig context")
    parser.add_argument("context_b", help="second kubeconfig context")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: kubectl's)")
    parser.add_argument("--kubectl", default="kubectl", help="kubectl binary (default: kubectl)")
    parser.add_argument("--namespace", default="linkerd", help="control-plane namespace")
    parser.add_argument("--days", type=int, default=90, help="expiry window in days (default 90)")
    args = parser.parse_args(argv)
    try:
        return audit(args)
    except AuditError as e:
        print(f"trust_audit: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
