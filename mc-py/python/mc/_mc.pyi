"""Type stubs of the native extension mc._mc (re-exported by the package mc)."""

from datetime import datetime, timedelta
from typing import Any, Iterator, Literal, Mapping, Optional, Sequence, Union

from mc import pki as pki
from mc import render as render

SessionProtocolName = Literal["http1", "http2"]

# --- errors ------------------------------------------------------------------------------------

class Error(Exception):
    """Base class of every error raised by mc; the message says what failed, why, and the fix."""

    field: Optional[str]
    """The field path the error is about (e.g. ``spec.gatewayPort``), when there is one."""
    block: Optional[int]
    """The 1-based PEM block number, for PEM errors about one block."""
    line: Optional[int]
    """The 1-based input line, for PEM errors."""

class PemError(Error):
    """A PEM bundle cannot be used (no certificate, wrong block, bad base64/DER, not a CA,
    outside its validity)."""

class ConfigError(Error):
    """The ``values`` of a linkerd-config ConfigMap are unusable; ``field`` names the value."""

class PkiError(Error):
    """Certificate generation failed (inconsistent options, unusable signer)."""

class IdentityError(Error):
    """A name is not a valid DNS name or Linkerd identity."""

class LinkError(Error):
    """A Link field is missing or invalid; ``field`` is its path."""

class SelectorError(Error):
    """A label selector cannot be parsed or is invalid."""

class MirrorError(Error):
    """A mirror cannot be computed (wrong kind, malformed object, not exported, no gateway)."""

class TransportError(Error):
    """A transport.l5d.io/v1 header is malformed, too long or incomplete."""

    needed: int
    """For an incomplete header: at least this many more bytes are needed."""

class RenderError(Error):
    """Manifests cannot be rendered from the given values; ``field`` is the value's path."""

class KindError(Error, TypeError):
    """An object is not the expected kind (apiVersion/kind) or does not match its schema."""

# --- trust -------------------------------------------------------------------------------------

PemInput = Union[str, bytes, bytearray]

class Anchor:
    """One trust anchor (a root CA certificate). Equal when the DER is equal."""

    @property
    def subject(self) -> str:
        """The subject distinguished name, e.g. ``CN=root.linkerd.cluster.local``."""
    @property
    def sans(self) -> list[str]:
        """Subject alternative names as openssl prints them (``DNS:…``, ``IP:…``)."""
    @property
    def not_before(self) -> datetime:
        """Start of validity (aware, UTC)."""
    @property
    def not_after(self) -> datetime:
        """End of validity (aware, UTC)."""
    @property
    def key_algorithm(self) -> str:
        """The public key algorithm, e.g. ``ECDSA P-256``."""
    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER, ``AB:CD:…`` as openssl prints it."""
    @property
    def der(self) -> bytes:
        """The certificate in DER."""
    def is_valid_at(self, now: Optional[datetime] = None) -> bool:
        """Whether the anchor is valid at ``now`` (default: the current time)."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class BundleDiff:
    """The difference between two bundles; false when they hold the same anchors."""

    @property
    def added(self) -> list[Anchor]:
        """Anchors only in the other bundle."""
    @property
    def removed(self) -> list[Anchor]:
        """Anchors only in this bundle."""
    @property
    def common(self) -> list[Anchor]:
        """Anchors in both."""
    def is_empty(self) -> bool:
        """Whether nothing was added or removed."""
    def __bool__(self) -> bool: ...

class TrustBundle:
    """An ordered, duplicate-free, non-empty set of trust anchors."""

    @staticmethod
    def from_pem(
        data: PemInput, *, now: Optional[datetime] = None, check_validity: bool = True
    ) -> TrustBundle:
        """Parses a PEM bundle of root CA certificates; raises :class:`PemError`. Releases the GIL."""
    @staticmethod
    def from_linkerd_config(
        values_yaml: str, *, now: Optional[datetime] = None, check_validity: bool = True
    ) -> TrustBundle:
        """Reads ``identityTrustAnchorsPEM`` from linkerd-config ``values`` YAML and parses it."""
    @property
    def anchors(self) -> list[Anchor]:
        """The anchors, in order of first appearance."""
    def to_pem(self) -> str:
        """The bundle as PEM."""
    def merge(self, other: TrustBundle) -> TrustBundle:
        """This bundle's anchors followed by the new ones of ``other``."""
    def diff(self, other: TrustBundle) -> BundleDiff:
        """Anchors added, removed and common from this bundle to ``other``."""
    def shares_anchor(self, other: TrustBundle) -> bool:
        """Whether at least one anchor is in both bundles."""
    def same_anchors(self, other: TrustBundle) -> bool:
        """Whether both bundles hold the same anchors, order aside."""
    def expiring_within(
        self, window: timedelta, *, now: Optional[datetime] = None
    ) -> list[Anchor]:
        """The anchors whose validity ends within ``window`` of ``now`` (expired ones included)."""
    def __len__(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...

class LinkerdConfig:
    """The trust settings of a Linkerd control plane, from its linkerd-config values."""

    @staticmethod
    def from_values_yaml(values_yaml: str) -> LinkerdConfig:
        """Reads the values YAML (with or without ``global``); raises :class:`ConfigError`."""
    @property
    def trust_anchors_pem(self) -> str:
        """``identityTrustAnchorsPEM``, not yet validated."""
    @property
    def trust_domain(self) -> str:
        """``identityTrustDomain``, or the cluster domain."""
    @property
    def cluster_domain(self) -> str:
        """``clusterDomain``, ``cluster.local`` when absent."""
    def trust_bundle(
        self, *, now: Optional[datetime] = None, check_validity: bool = True
    ) -> TrustBundle:
        """Parses ``trust_anchors_pem`` like :meth:`TrustBundle.from_pem`."""

# --- transport ---------------------------------------------------------------------------------

TRANSPORT_ALPN: bytes
"""The ALPN protocol name, ``transport.l5d.io/v1``."""
TRANSPORT_PREFACE: bytes
"""The bytes that open every header."""
TRANSPORT_MAX_HEADER_LEN: int
"""The largest protobuf body accepted."""

class TransportHeader:
    """The transport.l5d.io/v1 connection header: target port, host name, session protocol."""

    def __init__(
        self, port: int, name: Optional[str] = None, protocol: Optional[SessionProtocolName] = None
    ) -> None: ...
    @property
    def port(self) -> int:
        """The target port (1-65535)."""
    @property
    def name(self) -> Optional[str]:
        """The target host name, or None."""
    @property
    def protocol(self) -> Optional[SessionProtocolName]:
        """``http1``, ``http2``, or None for opaque TCP."""
    def encode(self) -> bytes:
        """Preface, 4-byte big-endian length, protobuf body."""
    @staticmethod
    def decode(data: bytes) -> TransportHeader:
        """Decodes exactly one header; raises :class:`TransportError`."""
    @staticmethod
    def decode_prefix(data: bytes) -> tuple[Optional[TransportHeader], int]:
        """``(header, consumed)`` or ``(None, needed)`` for a stream buffer."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

# --- selectors ---------------------------------------------------------------------------------

class Selector:
    """A validated label selector; the empty selector matches nothing."""

    def __init__(self, text: str = "") -> None:
        """Parses ``k=v,k2 in (a,b),!k3``; raises :class:`SelectorError`."""
    @staticmethod
    def parse(text: str) -> Selector:
        """Same as ``Selector(text)``."""
    @staticmethod
    def from_label_selector(value: Mapping[str, Any]) -> Selector:
        """Validates a Kubernetes LabelSelector dict."""
    def to_label_selector(self) -> dict[str, Any]:
        """The Kubernetes LabelSelector dict."""
    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels satisfy every requirement (never for the empty selector)."""
    def is_empty(self) -> bool:
        """Whether there is no requirement."""
    def to_query(self) -> str:
        """The ``labelSelector=`` query (the empty selector gives one nothing satisfies)."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

# --- links -------------------------------------------------------------------------------------

class Link:
    """A Link resource; typed properties validate and raise :class:`LinkError` with the field path."""

    @staticmethod
    def from_dict(value: Mapping[str, Any]) -> Link:
        """Reads a Link dict (v1alpha1..v1alpha3); another kind raises :class:`KindError`."""
    @staticmethod
    def from_yaml(text: str) -> Link:
        """Reads a Link from YAML or JSON text."""
    @staticmethod
    def crd() -> dict[str, Any]:
        """The Link CustomResourceDefinition."""
    def to_dict(self) -> dict[str, Any]:
        """The Link as a v1alpha3 dict."""
    def to_yaml(self) -> str:
        """The Link as YAML."""
    def validate(self) -> None:
        """Raises :class:`LinkError` (or :class:`SelectorError`) naming the first bad field."""
    @property
    def name(self) -> Optional[str]:
        """``metadata.name``."""
    @property
    def namespace(self) -> Optional[str]:
        """``metadata.namespace``."""
    @property
    def spec(self) -> dict[str, Any]:
        """The spec as on the wire (strings)."""
    @property
    def status(self) -> Optional[dict[str, Any]]:
        """The status, or None."""
    @property
    def cluster_name(self) -> str:
        """``spec.targetClusterName``."""
    @property
    def cluster_domain(self) -> str:
        """``spec.targetClusterDomain`` (default cluster.local)."""
    @property
    def linkerd_namespace(self) -> str:
        """``spec.targetClusterLinkerdNamespace`` (default linkerd)."""
    @property
    def credentials_secret(self) -> str:
        """``spec.clusterCredentialsSecret`` (default cluster-credentials-<cluster>)."""
    @property
    def gateway_addresses(self) -> list[str]:
        """``spec.gatewayAddress`` split at commas; [] without a gateway."""
    @property
    def gateway_port(self) -> Optional[int]:
        """``spec.gatewayPort`` as an int; None without a gateway."""
    @property
    def gateway_identity(self) -> Optional[str]:
        """``spec.gatewayIdentity``."""
    @property
    def probe_path(self) -> Optional[str]:
        """``spec.probeSpec.path``; None when not probed."""
    @property
    def probe_port(self) -> Optional[int]:
        """``spec.probeSpec.port`` as an int."""
    @property
    def probe_period(self) -> Optional[timedelta]:
        """``spec.probeSpec.period`` (default 3 s)."""
    @property
    def probe_timeout(self) -> Optional[timedelta]:
        """``spec.probeSpec.timeout`` (default 30 s)."""
    @property
    def probe_failure_threshold(self) -> Optional[int]:
        """``spec.probeSpec.failureThreshold`` (default 3)."""
    @property
    def selector(self) -> Selector:
        """``spec.selector`` (gateway mode)."""
    @property
    def remote_discovery_selector(self) -> Selector:
        """``spec.remoteDiscoverySelector``."""
    @property
    def federated_selector(self) -> Selector:
        """``spec.federatedServiceSelector``."""
    @property
    def excluded_labels(self) -> list[str]:
        """``spec.excludedLabels``."""
    @property
    def excluded_annotations(self) -> list[str]:
        """``spec.excludedAnnotations``."""
    def __eq__(self, other: object) -> bool: ...

# --- mirror names and objects ------------------------------------------------------------------

KubeObject = dict[str, Any]
RemoteEndpointsInput = Union[Mapping[str, Any], Sequence[Mapping[str, Any]], None]

def mirror_name(service: str, cluster: str) -> str:
    """``<service>-<cluster>``, shortened with a hash beyond 63 characters."""

def endpoint_mirror_name(host: str, cluster: str) -> str:
    """``<host>-<cluster>`` for headless endpoint mirrors."""

def federated_name(service: str) -> str:
    """``<service>-federated``."""

def probe_service_name(link: str) -> str:
    """``probe-<link>``."""

def remote_name(obj: Mapping[str, Any], cluster: str) -> Optional[tuple[str, str]]:
    """The remote (namespace, name) of a mirror object of ``cluster``, or None."""

def ownership(obj: Mapping[str, Any], cluster: str) -> Literal["ours", "other-cluster", "foreign"]:
    """Who owns a local object, seen as the mirror of ``cluster``."""

def desired_mirror(
    remote_service: Mapping[str, Any],
    remote_endpoints: RemoteEndpointsInput,
    link: Link,
    gateway_ips: Sequence[str],
    alive: bool,
) -> tuple[KubeObject, Optional[KubeObject]]:
    """The mirror Service and Endpoints the controller would write. Releases the GIL."""

def desired_mirrors(
    remote: Sequence[tuple[Mapping[str, Any], RemoteEndpointsInput]],
    link: Link,
    gateway_ips: Sequence[str],
    alive: bool,
) -> list[tuple[KubeObject, Optional[KubeObject]]]:
    """``desired_mirror`` over many (service, endpoints) pairs. Releases the GIL."""

class DesiredMirror:
    """Everything the controller computes for one remote Service."""

    @property
    def name(self) -> str:
        """The mirror's name."""
    @property
    def shortened(self) -> bool:
        """Whether the natural name was shortened."""
    @property
    def kind(self) -> Literal["gateway", "remote-discovery", "headless"]:
        """How the Service is mirrored."""
    @property
    def service(self) -> KubeObject:
        """The mirror Service."""
    @property
    def endpoints(self) -> Optional[KubeObject]:
        """Its Endpoints (gateway mode only)."""
    @property
    def endpoint_mirrors(self) -> list[tuple[KubeObject, KubeObject]]:
        """Headless only: (service, endpoints) per ready remote hostname."""

def compute_mirror(
    remote_service: Mapping[str, Any],
    remote_endpoints: RemoteEndpointsInput,
    link: Link,
    gateway_ips: Sequence[str],
    alive: bool,
    *,
    headless: bool = False,
) -> DesiredMirror:
    """``desired_mirror`` with headless mirroring and every object returned."""

def headless_endpoints(mirror_service: Mapping[str, Any], hosts: Sequence[tuple[str, str]]) -> KubeObject:
    """The Endpoints of a headless mirror from (hostname, endpoint-mirror ClusterIP) pairs."""

def probe_objects(
    link: Link, gateway_ips: Sequence[str], namespace: Optional[str] = None
) -> tuple[Optional[KubeObject], Optional[KubeObject]]:
    """The probe Service ``probe-<cluster>`` and its Endpoints (None without a probe/gateway IPs)."""

def needs_update(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> bool:
    """Whether ``actual`` differs from ``desired`` in what the mirror owns."""

# --- identities --------------------------------------------------------------------------------

class Identity:
    """A Linkerd workload identity ``<sa>.<ns>.serviceaccount.identity.<cp-ns>.<trust-domain>``."""

    def __init__(
        self,
        service_account: str,
        namespace: str,
        control_plane_namespace: str = "linkerd",
        trust_domain: str = "cluster.local",
    ) -> None:
        """A validated identity; raises :class:`IdentityError`."""
    @staticmethod
    def parse(text: str) -> Identity:
        """Parses an identity; raises :class:`IdentityError`."""
    @staticmethod
    def gateway(trust_domain: str = "cluster.local") -> Identity:
        """The default multicluster gateway identity."""
    @staticmethod
    def controller(link: str, trust_domain: str = "cluster.local") -> Identity:
        """The identity of the mirror controller of a Link."""
    @property
    def service_account(self) -> str:
        """The ServiceAccount."""
    @property
    def namespace(self) -> str:
        """The namespace."""
    @property
    def control_plane_namespace(self) -> str:
        """The control-plane namespace."""
    @property
    def trust_domain(self) -> str:
        """The trust domain."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

def validate_dns_name(name: str) -> None:
    """Raises :class:`IdentityError` when ``name`` is not a valid DNS name."""
