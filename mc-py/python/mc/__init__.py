"""mc: Linkerd-compatible multicluster service mirroring, the model as a Python module.

Everything here is the Rust model of ``mc-core`` (the same code the mirror controller, the
gateway and the ``mc`` CLI run), exposed with Pythonic names:

- :class:`TrustBundle` and :class:`Anchor`: trust-anchor bundles (parse, merge, diff, inspect);
- :mod:`mc.pki`: trust anchors, issuers and workload certificates;
- :class:`Link`, :class:`Selector`, :func:`mirror_name`, :func:`desired_mirror`: the mirror model;
- :mod:`mc.render`: the install, link and allow manifests;
- :class:`TransportHeader`: the ``transport.l5d.io/v1`` connection header.

Errors are :class:`mc.Error` subclasses whose message is the Rust message (what failed, why, and
the fix).
"""

from mc import _mc
from mc._mc import *  # noqa: F401,F403  (the native classes and functions)
from mc import pki, render  # noqa: F401

__all__ = [n for n in dir(_mc) if not n.startswith("_") and n not in ("pki", "render")] + ["pki", "render"]
