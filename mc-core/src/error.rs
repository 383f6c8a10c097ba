//! The one error type of `mc-core`.

/// Everything that can go wrong in `mc-core`. Each variant says what failed, why, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- trust, pki, identity ---
    /// A PEM input holds no CERTIFICATE block at all.
    #[error(
        "PEM: no certificate found in {lines} line(s) of input{der_hint}; fix: provide one or more \
         blocks from \"-----BEGIN CERTIFICATE-----\" to \"-----END CERTIFICATE-----\", e.g. the \
         output of `openssl x509 -in ca.crt`"
    )]
    PemNoCertificate {
        /// How many lines the input had.
        lines: usize,
        /// Extra advice when the input looks like binary DER (empty otherwise).
        der_hint: &'static str,
    },
    /// A PEM block has a type other than CERTIFICATE (for example a private key).
    #[error(
        "PEM block {block} (line {line}): found a \"{label}\" block where only CERTIFICATE blocks \
         are allowed; {advice}"
    )]
    PemNotCertificate {
        /// 1-based number of the block in the input.
        block: usize,
        /// 1-based line of its BEGIN marker.
        line: usize,
        /// The block type, e.g. `PRIVATE KEY`.
        label: String,
        /// What to do about it (depends on the label).
        advice: &'static str,
    },
    /// A PEM block is not closed by a matching END line.
    #[error(
        "PEM block {block} (line {line}): \"-----BEGIN {label}-----\" is not closed {why}; fix: add \
         \"-----END {label}-----\" after the base64 lines (the file may be truncated or two files \
         were pasted into each other)"
    )]
    PemUnterminated {
        /// 1-based number of the block in the input.
        block: usize,
        /// 1-based line of its BEGIN marker.
        line: usize,
        /// The block type.
        label: String,
        /// Where the scanner gave up, e.g. `before the end of input`.
        why: String,
    },
    /// An END line with no open block, or one whose type differs from its BEGIN line.
    #[error(
        "PEM line {line}: {what}; fix: every \"-----END X-----\" must close a \"-----BEGIN X-----\" with the same X"
    )]
    PemStrayEnd {
        /// 1-based line of the END marker.
        line: usize,
        /// What is wrong with it.
        what: String,
    },
    /// A PEM block's body is not valid base64.
    #[error(
        "PEM block {block} (line {line}): invalid base64: {reason}; fix: copy the block again \
         without editing it (only A-Z a-z 0-9 + / = are allowed between BEGIN and END)"
    )]
    PemBadBase64 {
        /// 1-based number of the block in the input.
        block: usize,
        /// 1-based line of the offending base64 text.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A CERTIFICATE block decodes to bytes that are not an X.509 certificate.
    #[error(
        "PEM block {block} (line {line}): not a valid X.509 certificate: {reason}; fix: export the \
         certificate again, e.g. `openssl x509 -in ca.crt -out ca.pem`"
    )]
    CertificateDer {
        /// 1-based number of the block in the input.
        block: usize,
        /// 1-based line of its BEGIN marker.
        line: usize,
        /// What the DER parser reported.
        reason: String,
    },
    /// A certificate in a trust bundle is not a CA (basicConstraints missing or CA:FALSE).
    #[error(
        "PEM block {block} (line {line}): certificate \"{subject}\" is not a CA ({why}); fix: a \
         trust bundle holds only root CA certificates (basicConstraints CA:TRUE): use the \
         trust-anchor certificate, not an issuer key pair's leaf or a workload certificate"
    )]
    NotCa {
        /// 1-based number of the block in the input.
        block: usize,
        /// 1-based line of its BEGIN marker.
        line: usize,
        /// The certificate subject.
        subject: String,
        /// `no basicConstraints extension` or `basicConstraints CA:FALSE`.
        why: &'static str,
    },
    /// A trust anchor is outside its validity window at the time of the check.
    #[error(
        "PEM block {block} (line {line}): certificate \"{subject}\" is {} at {}: valid from {} to \
         {}; fix: {}",
        if *.expired { "expired" } else { "not yet valid" },
        crate::trust::format_time(*.now),
        crate::trust::format_time(*.not_before),
        crate::trust::format_time(*.not_after),
        if *.expired {
            "rotate the trust anchor: create a new one, distribute a bundle holding the old and \
             the new anchor, re-issue the issuers, then remove the expired anchor"
        } else {
            "check the clocks of this machine and of the one that created the certificate, or \
             wait until it becomes valid"
        }
    )]
    AnchorValidity {
        /// 1-based number of the block in the input.
        block: usize,
        /// 1-based line of its BEGIN marker.
        line: usize,
        /// The certificate subject.
        subject: String,
        /// `true` when expired, `false` when not yet valid.
        expired: bool,
        /// The time of the check.
        now: std::time::SystemTime,
        /// Start of validity.
        not_before: std::time::SystemTime,
        /// End of validity.
        not_after: std::time::SystemTime,
    },
    /// The `values` YAML of the `linkerd-config` ConfigMap is unusable.
    #[error("linkerd-config values: {field}: {reason}; fix: {fix}")]
    LinkerdConfig {
        /// The field path, e.g. `values.identityTrustAnchorsPEM`.
        field: String,
        /// What is wrong.
        reason: String,
        /// What to do.
        fix: &'static str,
    },
    /// Options passed to certificate generation are inconsistent.
    #[error("certificate options: {field}: {reason}; fix: {fix}")]
    PkiOptions {
        /// The option, e.g. `IssuerOptions.not_after`.
        field: &'static str,
        /// What is wrong.
        reason: String,
        /// What to do.
        fix: &'static str,
    },
    /// A signer (certificate + key PEM) cannot be used to sign.
    #[error("signer {part}: {reason}; fix: {fix}")]
    PkiSigner {
        /// `certificate` or `key`.
        part: &'static str,
        /// What is wrong.
        reason: String,
        /// What to do.
        fix: &'static str,
    },
    /// The certificate library failed to build or sign a certificate.
    #[error("certificate generation failed while {action}: {source}")]
    PkiGenerate {
        /// What was being done, e.g. `signing the issuer certificate`.
        action: &'static str,
        /// The rcgen error.
        source: rcgen::Error,
    },
    /// A name is not a valid DNS name.
    #[error(
        "{name:?} is not a valid DNS name: {reason}; fix: use lowercase labels of 1-63 characters from a-z, 0-9 and '-', separated by dots, at most 253 characters"
    )]
    InvalidDnsName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string is not a Linkerd identity.
    #[error(
        "{input:?} is not a Linkerd identity: {reason}; fix: use \
         <serviceaccount>.<namespace>.serviceaccount.identity.<control-plane-namespace>.<trust-domain>, \
         e.g. linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
    )]
    InvalidIdentity {
        /// The rejected input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string is not a SPIFFE ID a workload can hold.
    #[error(
        "{input:?} is not a SPIFFE workload ID: {reason}; fix: use spiffe://<trust-domain>/<path>, \
         e.g. spiffe://cluster.local/ns/shop/sa/web (trust domain from a-z, 0-9, '.', '-', '_'; \
         path segments from a-z, A-Z, 0-9, '.', '-', '_')"
    )]
    InvalidSpiffeId {
        /// The rejected input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    // --- link, selector, naming, mirror ---
    /// A field of a Link (or of a resource given to the model) has an invalid value.
    #[error("{field}: {value:?} {problem}; fix: {fix}")]
    InvalidField {
        /// Field path, e.g. `spec.gatewayPort`.
        field: String,
        /// The offending value as written.
        value: String,
        /// What is wrong with it, e.g. `is not a port (1-65535)`.
        problem: String,
        /// How to correct it.
        fix: String,
    },
    /// A required field is absent or empty.
    #[error("{field} is missing; fix: {fix}")]
    MissingField {
        /// Field path, e.g. `spec.targetClusterName`.
        field: String,
        /// How to correct it.
        fix: String,
    },
    /// A label selector, in string form or as a LabelSelector, cannot be parsed or is invalid.
    #[error(
        "label selector {input:?}{at}: {problem}; fix: write requirements separated by commas: \
         k=v, k!=v, k in (a,b), k notin (a,b), k (exists), !k (does not exist); keys are \
         [prefix/]name labels, values are at most 63 characters of [A-Za-z0-9_.-]",
        at = if field.is_empty() { String::new() } else { format!(" at {field}") }
    )]
    InvalidSelector {
        /// Field path of the selector, empty for the string form.
        field: String,
        /// The selector (or requirement) as written.
        input: String,
        /// What is wrong.
        problem: String,
    },
    /// A duration string is not a Go-style duration or a bare number of seconds.
    #[error(
        "duration {input:?}: {problem}; fix: write a number of seconds (\"3\") or a duration \
         such as \"500ms\", \"3s\", \"1m30s\", \"1h\""
    )]
    InvalidDuration {
        /// The duration as written.
        input: String,
        /// What is wrong.
        problem: String,
    },
    /// A document is not the Kubernetes kind that was expected.
    #[error(
        "expected a {expected}, got apiVersion {api_version:?} kind {kind:?}; fix: pass a \
         {expected} object (check apiVersion and kind)"
    )]
    WrongKind {
        /// `apiVersion/kind` wanted, e.g. `v1/Service`.
        expected: &'static str,
        /// The apiVersion found (empty when absent).
        api_version: String,
        /// The kind found (empty when absent).
        kind: String,
    },
    /// A document has the right kind but does not deserialize into it.
    #[error("{expected}: {reason}; fix: correct the object so it matches the {expected} schema")]
    Malformed {
        /// The kind wanted.
        expected: &'static str,
        /// The deserializer's message (names the field).
        reason: String,
    },
    /// Every egress port is taken.
    #[error(
        "egress route {key}: all {count} egress ports are taken; fix: unexport Services, or \
         serve some Links in gateway mode (annotation mirror.linkerd.io/mc-link-mode: gateway)"
    )]
    EgressPortsExhausted {
        /// The route key that got no port.
        key: String,
        /// How many routes there are.
        count: usize,
    },
    /// A route key is owned by another Link.
    #[error(
        "egress route {key} belongs to Link {owner}, not {link}: two Links mirror into the same \
         Service name; fix: give the Links distinct targetClusterName values"
    )]
    EgressRouteConflict {
        /// The route key.
        key: String,
        /// The Link that holds it.
        owner: String,
        /// The Link that asked for it.
        link: String,
    },
    /// A Link's mode annotation names no mode.
    #[error(
        "Link annotation mirror.linkerd.io/mc-link-mode: {value:?} is not a mode; fix: use \
         egress, gateway, or auto (or remove the annotation for auto)"
    )]
    InvalidLinkMode {
        /// The annotation's value.
        value: String,
    },
    /// A remote Service cannot be mirrored as it is.
    #[error("remote Service {service}: {field} {problem}; fix: {fix}")]
    InvalidRemoteService {
        /// `namespace/name` of the remote Service.
        service: String,
        /// Field path inside the Service, e.g. `spec.ports[0].port`.
        field: String,
        /// What is wrong.
        problem: String,
        /// How to correct it.
        fix: String,
    },
    /// A remote Service matches none of the Link's export selectors.
    #[error(
        "remote Service {service} is not exported to {cluster}: its labels match neither \
         spec.selector nor spec.remoteDiscoverySelector; fix: label it {export_hint} in the \
         target cluster, or change the Link's selectors"
    )]
    NotExported {
        /// `namespace/name` of the remote Service.
        service: String,
        /// The Link's target cluster name.
        cluster: String,
        /// A label that would export it under the default selector.
        export_hint: &'static str,
    },
    /// A Service selected for gateway mode, but the Link has no gateway.
    #[error(
        "remote Service {service} matches spec.selector (gateway mode) but Link {cluster} has no \
         gateway (spec.gatewayAddress is empty); fix: set spec.gatewayAddress and \
         spec.gatewayPort, or export the Service with the remote-discovery selector"
    )]
    NoGateway {
        /// `namespace/name` of the remote Service.
        service: String,
        /// The Link's target cluster name.
        cluster: String,
    },
    /// A time given by the caller cannot be represented as a Kubernetes timestamp.
    #[error(
        "time {time:?} is outside the range of a Kubernetes timestamp; fix: pass the current \
         wall-clock time"
    )]
    TimeOutOfRange {
        /// The time passed.
        time: std::time::SystemTime,
    },
    // --- transport ---
    /// The stream does not start with the transport-header preface.
    #[error(
        "transport header: the stream does not start with the preface \"transport.l5d.io/v1\\r\\n\\r\\n\" \
         (found {found:?}); fix: a client that negotiates ALPN transport.l5d.io/v1 must send the \
         transport header before any application byte"
    )]
    TransportPreface {
        /// The bytes found instead (lossy UTF-8).
        found: String,
    },
    /// The declared header length exceeds the limit.
    #[error(
        "transport header: declared length {len} bytes exceeds the maximum of {max}; fix: the \
         sender is broken or hostile, headers carry only a port, a host name and a protocol"
    )]
    TransportHeaderTooLong {
        /// The declared length.
        len: usize,
        /// The maximum accepted.
        max: usize,
    },
    /// The protobuf body of the header is malformed.
    #[error(
        "transport header: malformed protobuf at body offset {offset}: {reason}; fix: encode a \
         transport.l5d.io.Header message {{int32 port = 1; string name = 2; SessionProtocol \
         session_protocol = 3}}"
    )]
    TransportHeaderMalformed {
        /// Byte offset inside the protobuf body.
        offset: usize,
        /// What is wrong there.
        reason: &'static str,
    },
    /// The header's port is outside 1..=65535 (0 when the field is absent).
    #[error(
        "transport header: field port = {port} is outside 1..=65535; fix: set port (field 1) to \
         the target service port"
    )]
    TransportHeaderPort {
        /// The port found (0 when the field is absent).
        port: i64,
    },
    /// The header's name is not valid UTF-8.
    #[error(
        "transport header: field name at body offset {offset} is not valid UTF-8; fix: send the \
         target host name (field 2) as UTF-8, e.g. web.shop.svc.cluster.local"
    )]
    TransportHeaderNameUtf8 {
        /// Byte offset of the name inside the protobuf body.
        offset: usize,
    },
    // --- render ---
    /// A value given to the manifest renderer (a chart value, a flag) is invalid.
    #[error("value {path}: {problem}; fix: {fix}")]
    RenderValue {
        /// The value's path (e.g. `gateway.serviceType`) or flag (e.g. `--cluster-name`).
        path: String,
        /// What is wrong, quoting the value.
        problem: String,
        /// How to correct it.
        fix: String,
    },
    /// A Helm-style `--set` assignment cannot be parsed.
    #[error(
        "--set {input:?}: {problem}; fix: write key.path=value pairs separated by commas, \
         lists as key={{a,b}}, list items as key[0]=v, and escape a literal comma as \\,"
    )]
    RenderSet {
        /// The assignment as written.
        input: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Rendered objects cannot be serialised.
    #[error("cannot serialise the manifests as {format}: {reason}; fix: report this as a bug")]
    RenderSerialize {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The serialiser's message.
        reason: String,
    },
}
