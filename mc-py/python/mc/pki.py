"""Certificates for a Linkerd-compatible identity hierarchy (ECDSA P-256, PEM out).

>>> root = create_trust_anchor()
>>> issuer = create_issuer(root)
>>> leaf = issue_leaf(issuer, "web.shop.serviceaccount.identity.linkerd.cluster.local")
>>> cert_pem, key_pem = leaf
"""

from mc._mc import pki as _native

CertifiedKey = _native.CertifiedKey
create_trust_anchor = _native.create_trust_anchor
create_issuer = _native.create_issuer
issue_leaf = _native.issue_leaf
DEFAULT_ANCHOR_CN = _native.DEFAULT_ANCHOR_CN
DEFAULT_ISSUER_CN = _native.DEFAULT_ISSUER_CN
DEFAULT_ANCHOR_VALIDITY = _native.DEFAULT_ANCHOR_VALIDITY
DEFAULT_ISSUER_VALIDITY = _native.DEFAULT_ISSUER_VALIDITY
DEFAULT_LEAF_VALIDITY = _native.DEFAULT_LEAF_VALIDITY

__all__ = [
    "DEFAULT_ANCHOR_CN",
    "DEFAULT_ANCHOR_VALIDITY",
    "DEFAULT_ISSUER_CN",
    "DEFAULT_ISSUER_VALIDITY",
    "DEFAULT_LEAF_VALIDITY",
    "CertifiedKey",
    "create_issuer",
    "create_trust_anchor",
    "issue_leaf",
]
