//! The `transport.l5d.io/v1` connection header.
//!
//! A client that negotiated the ALPN protocol [`ALPN`] with a gateway writes, before any
//! application byte, the literal [`PREFACE`], a 4-byte big-endian length, and that many bytes of
//! a protobuf message:
//!
//! ```text
//! message Header { int32 port = 1; string name = 2; SessionProtocol session_protocol = 3; }
//! message SessionProtocol { oneof kind { Http1 http1 = 1; Http2 http2 = 2; } }
//! message Http1 {}  message Http2 {}
//! ```
//!
//! The protobuf encoding is written by hand here (it is tiny). Decoding follows protobuf rules:
//! unknown fields are skipped, the last value of a repeated scalar wins, repeated embedded
//! messages merge. It is bounded ([`MAX_HEADER_LEN`]), checks the port range and the UTF-8 of
//! the name, and works on partial input: [`decode`] says how many more bytes it needs.
//!
//! ```
//! use mc_core::transport::{decode, Decoded, SessionProtocol, TransportHeader};
//!
//! let header = TransportHeader {
//!     port: 8080,
//!     name: Some("web.shop.svc.cluster.local".into()),
//!     protocol: Some(SessionProtocol::Http2),
//! };
//! let bytes = header.encode();
//! assert!(matches!(decode(&bytes[..10]), Ok(Decoded::Incomplete { .. })));
//! match decode(&bytes).unwrap() {
//!     Decoded::Complete { header: got, consumed } => {
//!         assert_eq!(got, header);
//!         assert_eq!(consumed, bytes.len());
//!     }
//!     Decoded::Incomplete { .. } => unreachable!(),
//! }
//! ```

use crate::{Error, Result};

/// The ALPN protocol name under which a client sends the transport header.
pub const ALPN: &[u8] = b"transport.l5d.io/v1";

/// The literal bytes that open every transport header.
pub const PREFACE: &[u8] = b"transport.l5d.io/v1\r\n\r\n";

/// The largest protobuf body accepted (64 KiB); a longer declared length is an error.
pub const MAX_HEADER_LEN: usize = 64 * 1024;

/// Bytes before the protobuf body: the preface and the 4-byte length.
const PREFIX_LEN: usize = PREFACE.len() + 4;

/// The session protocol a client announces; absent means opaque TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionProtocol {
    /// HTTP/1.x: the gateway forwards requests HTTP-aware.
    Http1,
    /// HTTP/2: the gateway forwards requests HTTP-aware.
    Http2,
}

/// A decoded `transport.l5d.io/v1` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransportHeader {
    /// The target port (1..=65535 on the wire).
    pub port: u16,
    /// The target host name; `None` (or an empty name, which is the same on the wire) means
    /// "this pod", the plain opaque-transport case. Gateways require a name.
    pub name: Option<String>,
    /// The session protocol; `None` means an opaque TCP stream.
    pub protocol: Option<SessionProtocol>,
}

/// The result of [`decode`] on a possibly partial buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole header was read; the application stream starts at `buf[consumed..]`.
    Complete {
        /// The header.
        header: TransportHeader,
        /// How many bytes of the buffer the header used.
        consumed: usize,
    },
    /// The buffer is a valid beginning of a header but too short.
    Incomplete {
        /// At least this many more bytes are needed. Once the length field has been read
        /// this is exact; before that it is the bytes missing up to the length field.
        needed: usize,
    },
}

impl TransportHeader {
    /// Encodes the header: preface, 4-byte big-endian length, protobuf body.
    ///
    /// An empty name is written as no name (proto3 has no difference between the two).
    pub fn encode(&self) -> Vec<u8> {
        let body = self.encode_body();
        let mut out = Vec::with_capacity(PREFIX_LEN + body.len());
        out.extend_from_slice(PREFACE);
        // The body is at most a few hundred bytes plus the name; a name longer than 4 GiB
        // cannot exist in memory on the targets we build for, so the conversion saturates.
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Encodes only the protobuf `Header` message.
    fn encode_body(&self) -> Vec<u8> {
        let mut body = Vec::new();
        if self.port != 0 {
            put_varint(&mut body, key(1, WIRE_VARINT));
            put_varint(&mut body, u64::from(self.port));
        }
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            put_varint(&mut body, key(2, WIRE_LEN));
            put_varint(&mut body, name.len() as u64);
            body.extend_from_slice(name.as_bytes());
        }
        if let Some(protocol) = self.protocol {
            let field = match protocol {
                SessionProtocol::Http1 => 1,
                SessionProtocol::Http2 => 2,
            };
            // SessionProtocol { kind: HttpN {} } is the key of the empty inner message and
            // its zero length: two bytes.
            put_varint(&mut body, key(3, WIRE_LEN));
            put_varint(&mut body, 2);
            put_varint(&mut body, key(field, WIRE_LEN));
            put_varint(&mut body, 0);
        }
        body
    }
}

/// Decodes a transport header from the start of `buf`.
///
/// Returns [`Decoded::Incomplete`] when `buf` is a valid but short prefix, and an error as soon
/// as the bytes seen cannot start a valid header (wrong preface, declared length above
/// [`MAX_HEADER_LEN`], malformed protobuf, port outside 1..=65535, name not UTF-8).
pub fn decode(buf: &[u8]) -> Result<Decoded> {
    let seen = buf.len().min(PREFACE.len());
    if buf[..seen] != PREFACE[..seen] {
        return Err(Error::TransportPreface {
            found: String::from_utf8_lossy(&buf[..seen]).into_owned(),
        });
    }
    let Some(len_bytes) = buf.get(PREFACE.len()..PREFIX_LEN) else {
        return Ok(Decoded::Incomplete {
            needed: PREFIX_LEN - buf.len(),
        });
    };
    let len_bytes: [u8; 4] = len_bytes.try_into().map_err(|_| malformed(0, "length"))?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > MAX_HEADER_LEN {
        return Err(Error::TransportHeaderTooLong {
            len,
            max: MAX_HEADER_LEN,
        });
    }
    let total = PREFIX_LEN + len;
    let Some(body) = buf.get(PREFIX_LEN..total) else {
        return Ok(Decoded::Incomplete {
            needed: total - buf.len(),
        });
    };
    let header = decode_body(body)?;
    Ok(Decoded::Complete {
        header,
        consumed: total,
    })
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

fn key(field: u32, wire: u8) -> u64 {
    (u64::from(field) << 3) | u64::from(wire)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn malformed(offset: usize, reason: &'static str) -> Error {
    Error::TransportHeaderMalformed { offset, reason }
}

/// A cursor over a protobuf message; offsets in errors are relative to the header body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the header body, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn varint(&mut self) -> Result<u64> {
        let start = self.offset();
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(malformed(start, "varint runs past the end of the message"));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(malformed(start, "varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed(start, "varint longer than 10 bytes"))
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8]> {
        let start = self.offset();
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| malformed(start, "field length runs past the end of the message"))?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn len_delimited(&mut self) -> Result<(usize, &'a [u8])> {
        let start = self.offset();
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| malformed(start, "field length too large"))?;
        let offset = self.offset();
        Ok((offset, self.bytes(len)?))
    }

    /// Reads a field key: (field number, wire type).
    fn key(&mut self) -> Result<(u64, u8)> {
        let start = self.offset();
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(malformed(start, "field number 0 is invalid"));
        }
        Ok((field, (key & 7) as u8))
    }

    /// Skips the value of an unknown field of the given wire type.
    fn skip(&mut self, wire: u8) -> Result<()> {
        let start = self.offset();
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.bytes(8).map(drop),
            WIRE_LEN => self.len_delimited().map(drop),
            WIRE_I32 => self.bytes(4).map(drop),
            _ => Err(malformed(
                start,
                "unsupported wire type (groups are not accepted)",
            )),
        }
    }

    fn expect_wire(&self, start: usize, wire: u8, want: u8) -> Result<()> {
        if wire == want {
            Ok(())
        } else {
            Err(malformed(start, "known field has the wrong wire type"))
        }
    }
}

fn decode_body(body: &[u8]) -> Result<TransportHeader> {
    let mut r = Reader::new(body, 0);
    let mut port: i32 = 0;
    let mut name = String::new();
    let mut protocol: Option<Option<SessionProtocol>> = None;
    while !r.at_end() {
        let start = r.offset();
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect_wire(start, wire, WIRE_VARINT)?;
                // int32 on the wire: the low 32 bits of the varint, two's complement.
                port = r.varint()? as u32 as i32;
            }
            2 => {
                r.expect_wire(start, wire, WIRE_LEN)?;
                let (offset, bytes) = r.len_delimited()?;
                name = std::str::from_utf8(bytes)
                    .map_err(|_| Error::TransportHeaderNameUtf8 { offset })?
                    .to_owned();
            }
            3 => {
                r.expect_wire(start, wire, WIRE_LEN)?;
                let (offset, bytes) = r.len_delimited()?;
                let kind = decode_session_protocol(bytes, offset)?;
                // Repeated embedded messages merge: a later kind replaces an earlier one.
                protocol = Some(kind.or(protocol.flatten()));
            }
            _ => r.skip(wire)?,
        }
    }
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(Error::TransportHeaderPort {
            port: i64::from(port),
        })?;
    let protocol = match protocol {
        None => None,
        Some(Some(kind)) => Some(kind),
        Some(None) => {
            return Err(malformed(0, "session_protocol is present but sets no kind"));
        }
    };
    Ok(TransportHeader {
        port,
        name: (!name.is_empty()).then_some(name),
        protocol,
    })
}

/// Decodes a `SessionProtocol` message; `None` when it sets no kind.
fn decode_session_protocol(buf: &[u8], base: usize) -> Result<Option<SessionProtocol>> {
    let mut r = Reader::new(buf, base);
    let mut kind = None;
    while !r.at_end() {
        let start = r.offset();
        let (field, wire) = r.key()?;
        let this = match field {
            1 => SessionProtocol::Http1,
            2 => SessionProtocol::Http2,
            _ => {
                r.skip(wire)?;
                continue;
            }
        };
        r.expect_wire(start, wire, WIRE_LEN)?;
        let (offset, inner) = r.len_delimited()?;
        // Http1 and Http2 are empty messages: any content is unknown fields, skipped, but it
        // must still be well formed.
        let mut inner = Reader::new(inner, offset);
        while !inner.at_end() {
            let (_, wire) = inner.key()?;
            inner.skip(wire)?;
        }
        kind = Some(this);
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    fn header(port: u16, name: &str, protocol: Option<SessionProtocol>) -> TransportHeader {
        TransportHeader {
            port,
            name: (!name.is_empty()).then(|| name.to_owned()),
            protocol,
        }
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn complete(buf: &[u8]) -> (TransportHeader, usize) {
        match decode(buf).unwrap() {
            Decoded::Complete { header, consumed } => (header, consumed),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    #[test]
    fn encodes_the_exact_upstream_bytes() {
        let h = header(
            8080,
            "web.ns.svc.cluster.local",
            Some(SessionProtocol::Http2),
        );
        let mut want = b"transport.l5d.io/v1\r\n\r\n".to_vec();
        let mut body = vec![0x08, 0x90, 0x3f]; // port = 8080
        body.push(0x12);
        body.push(24);
        body.extend_from_slice(b"web.ns.svc.cluster.local");
        body.extend_from_slice(&[0x1a, 0x02, 0x12, 0x00]); // session_protocol { http2 {} }
        want.extend_from_slice(&(body.len() as u32).to_be_bytes());
        want.extend_from_slice(&body);
        assert_eq!(h.encode(), want);
    }

    #[test]
    fn opaque_header_has_no_session_protocol_field() {
        let bytes = header(5432, "db.ns.svc.cluster.local", None).encode();
        let body = &bytes[PREFIX_LEN..];
        assert!(
            !body.contains(&0x1a),
            "field 3 key must be absent: {body:?}"
        );
        assert_eq!(complete(&bytes).0.protocol, None);
    }

    #[test]
    fn http1_is_field_one_of_the_oneof() {
        let bytes = header(80, "a.svc.cluster.local", Some(SessionProtocol::Http1)).encode();
        assert!(bytes.ends_with(&[0x1a, 0x02, 0x0a, 0x00]));
    }

    #[test]
    fn application_bytes_after_the_header_are_not_consumed() {
        let mut bytes = header(80, "a.svc.cluster.local", None).encode();
        let len = bytes.len();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(complete(&bytes).1, len);
    }

    #[test]
    fn incomplete_reports_missing_bytes() {
        let bytes = header(80, "a.svc.cluster.local", None).encode();
        assert_eq!(
            decode(&[]).unwrap(),
            Decoded::Incomplete { needed: PREFIX_LEN }
        );
        assert_eq!(
            decode(&bytes[..5]).unwrap(),
            Decoded::Incomplete {
                needed: PREFIX_LEN - 5
            }
        );
        assert_eq!(
            decode(&bytes[..PREFIX_LEN + 1]).unwrap(),
            Decoded::Incomplete {
                needed: bytes.len() - PREFIX_LEN - 1
            }
        );
    }

    #[test]
    fn wrong_preface_is_an_error_as_soon_as_it_differs() {
        let err = decode(b"GET / HTTP/1.1\r\n").unwrap_err();
        assert!(matches!(err, Error::TransportPreface { .. }), "{err}");
        assert!(decode(b"transport.l5d.io/v2").is_err());
    }

    #[test]
    fn oversized_length_is_rejected_before_the_body_arrives() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&((MAX_HEADER_LEN as u32) + 1).to_be_bytes());
        let err = decode(&bytes).unwrap_err();
        assert!(matches!(err, Error::TransportHeaderTooLong { .. }), "{err}");
    }

    #[test]
    fn port_must_be_in_range() {
        // No port field at all: port 0.
        let err = decode(&framed(&[0x12, 0x01, b'a'])).unwrap_err();
        assert!(
            matches!(err, Error::TransportHeaderPort { port: 0 }),
            "{err}"
        );
        // 65536.
        let mut body = vec![0x08];
        put_varint(&mut body, 65536);
        assert!(matches!(
            decode(&framed(&body)).unwrap_err(),
            Error::TransportHeaderPort { port: 65536 }
        ));
        // -1 as int32: a 10-byte varint.
        let mut body = vec![0x08];
        put_varint(&mut body, u64::MAX);
        assert!(matches!(
            decode(&framed(&body)).unwrap_err(),
            Error::TransportHeaderPort { port: -1 }
        ));
    }

    #[test]
    fn name_must_be_utf8() {
        let err = decode(&framed(&[0x08, 0x50, 0x12, 0x02, 0xff, 0xfe])).unwrap_err();
        assert!(
            matches!(err, Error::TransportHeaderNameUtf8 { offset: 4 }),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let mut body = vec![0x08, 0x50]; // port 80
        body.extend_from_slice(&[0x20, 0x96, 0x01]); // field 4 varint
        body.extend_from_slice(&[0x29, 1, 2, 3, 4, 5, 6, 7, 8]); // field 5 fixed64
        body.extend_from_slice(&[0x32, 0x03, 1, 2, 3]); // field 6 bytes
        body.extend_from_slice(&[0x3d, 1, 2, 3, 4]); // field 7 fixed32
        body.extend_from_slice(&[0x1a, 0x04, 0x18, 0x01, 0x0a, 0x00]); // sp { 3: 1, http1 {} }
        let (h, _) = complete(&framed(&body));
        assert_eq!(h, header(80, "", Some(SessionProtocol::Http1)));
    }

    #[test]
    fn last_scalar_wins_and_oneof_takes_the_last_kind() {
        let body = [
            0x08, 0x50, 0x08, 0x51, // port 80, then 81
            0x1a, 0x02, 0x0a, 0x00, // http1
            0x1a, 0x02, 0x12, 0x00, // http2
        ];
        assert_eq!(
            complete(&framed(&body)).0,
            header(81, "", Some(SessionProtocol::Http2))
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let cases: &[&[u8]] = &[
            &[0x08],                         // varint missing
            &[0x08, 0x80],                   // varint truncated
            &[0x12, 0x05, b'a'],             // string longer than the body
            &[0x0a, 0x00],                   // port with wire type LEN
            &[0x00, 0x01],                   // field number 0
            &[0x0b, 0x0c],                   // group wire type
            &[0x08, 0x50, 0x1a, 0x00],       // session_protocol without kind
            &[0x08, 0x50, 0x1a, 0x01, 0x08], // session_protocol truncated inside
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ], // overflow
        ];
        for body in cases {
            assert!(decode(&framed(body)).is_err(), "accepted {body:02x?}");
        }
    }

    fn arb_header() -> impl Strategy<Value = TransportHeader> {
        (
            1..=u16::MAX,
            proptest::option::of("\\PC{1,80}"),
            proptest::option::of(prop_oneof![
                Just(SessionProtocol::Http1),
                Just(SessionProtocol::Http2)
            ]),
        )
            .prop_map(|(port, name, protocol)| TransportHeader {
                port,
                name,
                protocol,
            })
    }

    proptest! {
        #[test]
        fn roundtrip(h in arb_header(), trailing in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut bytes = h.encode();
            let len = bytes.len();
            bytes.extend_from_slice(&trailing);
            prop_assert_eq!(decode(&bytes).unwrap(), Decoded::Complete { header: h, consumed: len });
        }

        #[test]
        fn every_prefix_is_incomplete_with_the_right_count(h in arb_header(), cut in any::<prop::sample::Index>()) {
            let bytes = h.encode();
            let cut = cut.index(bytes.len());
            let needed = match decode(&bytes[..cut]).unwrap() {
                Decoded::Incomplete { needed } => needed,
                other => panic!("prefix of {cut} bytes decoded as {other:?}"),
            };
            if cut >= PREFIX_LEN {
                prop_assert_eq!(needed, bytes.len() - cut);
            } else {
                prop_assert_eq!(needed, PREFIX_LEN - cut);
            }
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn never_panics_on_arbitrary_bodies(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let framed = framed(&body);
            match decode(&framed) {
                Ok(Decoded::Complete { consumed, header }) => {
                    prop_assert_eq!(consumed, framed.len());
                    prop_assert!(header.port != 0);
                }
                Ok(Decoded::Incomplete { .. }) => prop_assert!(false, "a framed body is never incomplete"),
                Err(_) => {}
            }
        }
    }
}
