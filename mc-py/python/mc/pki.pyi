"""Type stubs of mc.pki."""

from datetime import datetime, timedelta
from typing import Iterator, Optional

DEFAULT_ANCHOR_CN: str
DEFAULT_ISSUER_CN: str
DEFAULT_ANCHOR_VALIDITY: timedelta
DEFAULT_ISSUER_VALIDITY: timedelta
DEFAULT_LEAF_VALIDITY: timedelta

class CertifiedKey:
    """A certificate and its private key, both PEM. Unpacks as ``cert_pem, key_pem``."""

    def __init__(self, cert_pem: str, key_pem: str) -> None: ...
    @property
    def cert_pem(self) -> str:
        """The certificate, one CERTIFICATE block."""
    @property
    def key_pem(self) -> str:
        """The private key, one PRIVATE KEY block (PKCS#8)."""
    def chain_pem(self, issuer: CertifiedKey) -> str:
        """This certificate followed by the issuer's."""
    def __iter__(self) -> Iterator[str]: ...
    def __eq__(self, other: object) -> bool: ...

def create_trust_anchor(
    common_name: Optional[str] = None,
    *,
    not_before: Optional[datetime] = None,
    not_after: Optional[datetime] = None,
    validity: Optional[timedelta] = None,
) -> CertifiedKey:
    """A self-signed root CA (default CN root.linkerd.cluster.local, 10 years)."""

def create_issuer(
    signer: CertifiedKey,
    common_name: Optional[str] = None,
    *,
    not_before: Optional[datetime] = None,
    not_after: Optional[datetime] = None,
    validity: Optional[timedelta] = None,
) -> CertifiedKey:
    """An intermediate CA with path length 0 (default CN identity.linkerd.cluster.local, 8760 h)."""

def issue_leaf(
    issuer: CertifiedKey,
    identity: str,
    *,
    not_before: Optional[datetime] = None,
    not_after: Optional[datetime] = None,
    validity: Optional[timedelta] = None,
    server_auth: bool = True,
    client_auth: bool = True,
) -> CertifiedKey:
    """A workload certificate whose DNS SAN is ``identity`` (default 24 h, both usages)."""
