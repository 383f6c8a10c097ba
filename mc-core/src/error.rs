//! The one error type of `mc-core`.

/// Everything that can go wrong in `mc-core`. Each variant says what failed, why, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Placeholder until the first module lands; removed then.
    #[error("not yet implemented: {0}")]
    Unimplemented(&'static str),
    // --- trust, pki, identity ---
    // --- link, selector, naming, mirror ---
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
}
