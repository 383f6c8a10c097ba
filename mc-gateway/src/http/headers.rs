//! The gateway's one header policy, for both HTTP paths (the lean HTTP/1 forwarder in
//! `crate::http::h1` and hyper in `crate::http`), stage 4 of a connection: which fields of a
//! message are never forwarded to the next hop, and which the gateway adds.
//!
//! **To add a header the gateway forwards or sets, this module is the one place.** A field
//! the gateway sets on every request: a field of [`Added`], its value in [`Added::new`], and
//! one line each in [`Added::set`] (hyper) and [`Added::write`] (lean HTTP/1); when a client's
//! own value must not reach the target, list it in [`GATEWAY_SET`] too. A field that must not
//! be forwarded: [`HOP_BY_HOP`], or a rule in [`is_dropped`]. Both paths call only this
//! module, so they cannot disagree.
//!
//! - the fields that describe one connection only: RFC 9110 §7.6.1 (`Connection`,
//!   `Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`) and the proxy
//!   authentication fields, which apply to one hop (§11.7);
//! - every field a `Connection` field names (§7.6.1);
//! - on requests, the `l5d-*` fields the gateway sets itself ([`GATEWAY_SET`]): a client's
//!   own value never reaches the target.
//!
//! The lean HTTP/1 path forwards a body as it arrived, so it keeps the fields that frame it
//! (`Content-Length`, `Transfer-Encoding`) even when they are hop-by-hop or named in
//! `Connection`: see [`is_dropped`].
//!
//! An HTTP/1.1 upgrade (`Connection: upgrade` with `Upgrade`) keeps those two fields, and only
//! an upgrade: [`upgrade_protocol`], [`keep_upgrade`] and [`crate::http::upgrade`].
//!
//! The gateway sets `l5d-client-id` (the authenticated client identity, replacing the
//! client's own) and appends its element to `Forwarded` (RFC 7239; [`forwarded_element`]), and
//! refuses a request whose `Forwarded` already names it ([`check_forwarded`]: a loop). `Host`
//! is the target's, set by each path where it writes the request line.
//!
//! `l5d-orig-proto` ([`ORIG_PROTO_HEADER`]) describes the hop between two Linkerd proxies: a
//! client proxy that carries an HTTP/1.x request over HTTP/2 names the request's original
//! version in it. It is dropped from every message like the fields above; [`exchange`] decides,
//! from it, the version the request is sent to the target in (the downgrade linkerd2-proxy's
//! inbound side does), and [`orig_proto_of`] the value the response then carries back.

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::transport::route::Target;
use crate::{Error, Result};

/// The fields the gateway sets on every request it forwards, with one connection's values for
/// one target (built once per target, used by both HTTP paths).
#[derive(Debug, Clone)]
pub(crate) struct Added {
    /// `l5d-client-id`: the authenticated client identity (the client's own value was dropped,
    /// [`GATEWAY_SET`]).
    client_id: HeaderValue,
    /// `Forwarded`: this gateway's element, appended after the client's own values.
    forwarded: HeaderValue,
}

impl Added {
    /// The values for requests of `client_id` to `target` through the gateway `gateway_id`;
    /// an error names a value that is not a valid header value.
    pub(crate) fn new(
        gateway_id: &str,
        client_id: &str,
        target: &Target,
    ) -> std::result::Result<Self, header::InvalidHeaderValue> {
        Ok(Self {
            client_id: HeaderValue::from_str(client_id)?,
            forwarded: HeaderValue::from_str(&forwarded_element(gateway_id, client_id, target))?,
        })
    }

    /// Fixed values (the fuzz targets' and the tests').
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn fixed(client_id: &'static str, forwarded: &'static str) -> Self {
        Self {
            client_id: HeaderValue::from_static(client_id),
            forwarded: HeaderValue::from_static(forwarded),
        }
    }

    /// Sets the fields on a request whose fields were [`strip`]ped (hyper's path).
    pub(crate) fn set(&self, headers: &mut HeaderMap) {
        headers.insert(CLIENT_ID_HEADER, self.client_id.clone());
        headers.append(header::FORWARDED, self.forwarded.clone());
    }

    /// Writes the fields as `name: value\r\n` lines of a request head (the lean HTTP/1 path,
    /// after the client's fields it kept).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        for (name, value) in [
            (CLIENT_ID_HEADER, &self.client_id),
            ("forwarded", &self.forwarded),
        ] {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The header that carries the authenticated client identity to the target.
pub(crate) const CLIENT_ID_HEADER: &str = "l5d-client-id";

/// Fields that describe one connection and are never forwarded (lowercase).
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Request fields the gateway sets itself: the client's values are removed (lowercase).
pub(crate) const GATEWAY_SET: [&str; 1] = [CLIENT_ID_HEADER];

/// The header in which a Linkerd proxy that carries an HTTP/1.x request over HTTP/2 names the
/// request's original version (`HTTP/1.1` or `HTTP/1.0`, optionally followed by
/// `; absolute-form`), and in which the response names the version the target answered in.
pub(crate) const ORIG_PROTO_HEADER: &str = "l5d-orig-proto";

/// How one request is sent to the target, decided by [`exchange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exchange {
    /// The HTTP version of the request sent to the target.
    pub(crate) version: Version,
    /// The request came as HTTP/2 with `l5d-orig-proto` naming HTTP/1.x and goes to the
    /// target in that version: the response carries `l5d-orig-proto` back
    /// ([`orig_proto_of`]).
    pub(crate) downgraded: bool,
}

/// Which message a field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    /// A request, client to target.
    Request,
    /// A response, target to client.
    Response,
}

/// Whether `name` is a hop-by-hop field ([`HOP_BY_HOP`]), in any case.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// Whether `name` is a field the gateway sets on requests ([`GATEWAY_SET`]), in any case.
pub(crate) fn is_gateway_set(name: &[u8]) -> bool {
    GATEWAY_SET
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// Whether the field `name` of a `message` is dropped, given the field names its
/// `Connection` fields list (`listed`). With `keep_framing` (a path that forwards the body as
/// it was framed) `Content-Length` and `Transfer-Encoding` stay whatever `Connection` says:
/// dropping them would let the next hop frame the body differently (`Connection:
/// content-length` would smuggle the body as a request).
pub(crate) fn is_dropped(
    name: &[u8],
    message: Message,
    listed: &[&[u8]],
    keep_framing: bool,
) -> bool {
    let frames = name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding");
    if message == Message::Request && is_gateway_set(name) {
        return true;
    }
    if name.eq_ignore_ascii_case(ORIG_PROTO_HEADER.as_bytes()) {
        return true;
    }
    if keep_framing && frames {
        return false;
    }
    is_hop_by_hop(name) || listed.iter().any(|l| l.eq_ignore_ascii_case(name))
}

/// Trims spaces and tabs around a field value or list element.
pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

/// The comma-separated elements of a field value (a `Connection` value's field names and
/// options), trimmed, empty ones skipped.
pub(crate) fn elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',').map(trim).filter(|e| !e.is_empty())
}

/// Removes from `headers` every field the policy drops from a `message` (hyper's path, which
/// frames bodies itself).
pub(crate) fn strip(headers: &mut HeaderMap, message: Message) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| elements(v.as_bytes()))
        .filter_map(|n| HeaderName::from_bytes(n).ok())
        .collect();
    let listed: Vec<&[u8]> = listed.iter().map(|n| n.as_str().as_bytes()).collect();
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_dropped(n.as_str().as_bytes(), message, &listed, false))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}

/// The version a request of `version`, with the `l5d-orig-proto` value `orig_proto`, is sent
/// to the target in, on a connection whose target speaks HTTP/2 (`upstream_h2`) or HTTP/1.1.
///
/// Only an HTTP/2 request is downgraded, as linkerd2-proxy's inbound side does: a value that
/// starts with `HTTP/1.1` or `HTTP/1.0` makes it that version (whatever the target's protocol:
/// the client proxy upgraded it because it believed the gateway would undo it); any other
/// value is ignored (the field is dropped all the same) and the request keeps the
/// connection's protocol.
pub(crate) fn exchange(
    version: Version,
    orig_proto: Option<&HeaderValue>,
    upstream_h2: bool,
) -> Exchange {
    let default = Exchange {
        version: if upstream_h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        },
        downgraded: false,
    };
    let Some(value) = orig_proto.filter(|_| version == Version::HTTP_2) else {
        return default;
    };
    let original = if value.as_bytes().starts_with(b"HTTP/1.1") {
        Version::HTTP_11
    } else if value.as_bytes().starts_with(b"HTTP/1.0") {
        Version::HTTP_10
    } else {
        return default;
    };
    Exchange {
        version: original,
        downgraded: true,
    }
}

/// The `l5d-orig-proto` value a downgraded request's response carries back: the version the
/// target answered in (`None` for a version that has no value, e.g. HTTP/2).
pub(crate) fn orig_proto_of(version: Version) -> Option<HeaderValue> {
    match version {
        Version::HTTP_11 => Some(HeaderValue::from_static("HTTP/1.1")),
        Version::HTTP_10 => Some(HeaderValue::from_static("HTTP/1.0")),
        _ => None,
    }
}

/// The protocol a request asks to switch to: its `Upgrade` value, when a `Connection` field
/// lists `upgrade` (RFC 9110 §7.8); `None` otherwise.
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let listed = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| elements(v.as_bytes()))
        .any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    listed
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Puts back, after [`strip`], the two fields an upgrade (request, or `101` response) needs
/// on the next hop: `Upgrade: <protocol>` and `Connection: upgrade`. The only exception to the
/// policy, for upgrades only.
pub(crate) fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::UPGRADE, protocol);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// Loop protection for HTTP: refuses a request whose `Forwarded` headers already name this
/// gateway (`by=<gateway-id>`), and builds the element this gateway appends.
pub(crate) fn check_forwarded<'a>(
    values: impl Iterator<Item = &'a str>,
    gateway_id: &str,
) -> Result<()> {
    for value in values {
        for element in value.split(',') {
            for pair in element.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("by") && v.trim().trim_matches('"') == gateway_id {
                    return Err(Error::Loop {
                        why: format!(
                            "the request already passed through {gateway_id} (Forwarded: {value})"
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The `Forwarded` element this gateway appends (RFC 7239):
/// `by=<gateway-id>;for=<client-id>;host=<target>;proto=https`. An identity that is not a
/// token (a SPIFFE ID's `:` and `/`) is sent as a quoted string; `host` is sent as it always
/// was (`name:port`).
pub(crate) fn forwarded_element(gateway_id: &str, client_id: &str, target: &Target) -> String {
    let (by, client) = (forwarded_value(gateway_id), forwarded_value(client_id));
    format!("by={by};for={client};host={target};proto=https")
}

/// `value` as an RFC 7239 value: as it is when it is a token (RFC 9110 §5.6.2), otherwise a
/// quoted string with `"` and `\` escaped.
fn forwarded_value(value: &str) -> std::borrow::Cow<'_, str> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !value.is_empty() && value.bytes().all(tchar) {
        return value.into();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted.into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_rfc_9110_fields_and_the_proxy_authentication_fields_are_hop_by_hop() {
        for name in [
            "Connection",
            "proxy-connection",
            "Keep-Alive",
            "TE",
            "transfer-encoding",
            "UPGRADE",
            "proxy-authenticate",
            "Proxy-Authorization",
        ] {
            assert!(is_hop_by_hop(name.as_bytes()), "{name}");
        }
        for name in [
            "content-length",
            "host",
            "trailer",
            "x-upgrade",
            "l5d-client-id",
        ] {
            assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn fields_named_in_connection_and_gateway_set_fields_are_dropped() {
        let listed: [&[u8]; 2] = [b"x-secret", b"Content-Length"];
        let dropped = |name: &str, m, keep| is_dropped(name.as_bytes(), m, &listed, keep);
        assert!(dropped("X-Secret", Message::Request, false));
        assert!(dropped("x-secret", Message::Response, true));
        assert!(!dropped("x-end-to-end", Message::Request, false));
        // The client's l5d-client-id never reaches the target; a target's is left alone.
        assert!(dropped("L5d-Client-Id", Message::Request, true));
        assert!(!dropped("l5d-client-id", Message::Response, false));
        // Framing fields stay on a path that forwards the body as framed, and only there.
        assert!(!dropped("content-length", Message::Request, true));
        assert!(!dropped("transfer-encoding", Message::Response, true));
        assert!(dropped("content-length", Message::Request, false));
        assert!(dropped("transfer-encoding", Message::Request, false));
    }

    #[test]
    fn strip_applies_the_policy_to_a_header_map() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret,,"));
        h.append("connection", HeaderValue::from_static(" x-other "));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("l5d-client-id", HeaderValue::from_static("forged"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let mut response = h.clone();
        strip(&mut h, Message::Request);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
        strip(&mut response, Message::Response);
        let mut kept: Vec<_> = response.keys().map(|k| k.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["l5d-client-id", "x-keep"]);
    }

    #[test]
    fn only_a_connection_listing_upgrade_makes_an_upgrade_and_it_keeps_its_fields() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None);
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        h.append("connection", HeaderValue::from_static("x-a, Upgrade"));
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        h.remove("upgrade");
        assert_eq!(upgrade_protocol(&h), None);
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-a", HeaderValue::from_static("1"));
        strip(&mut h, Message::Request);
        keep_upgrade(&mut h, HeaderValue::from_static("websocket"));
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn l5d_orig_proto_is_dropped_from_requests_and_responses_on_both_paths() {
        for m in [Message::Request, Message::Response] {
            for keep in [false, true] {
                assert!(is_dropped(b"L5d-Orig-Proto", m, &[], keep), "{m:?}");
            }
        }
        let mut h = HeaderMap::new();
        h.insert(ORIG_PROTO_HEADER, HeaderValue::from_static("HTTP/1.1"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip(&mut h, Message::Response);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn an_http2_request_with_l5d_orig_proto_goes_to_the_target_in_its_original_version() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        let down = |version| Exchange {
            version,
            downgraded: true,
        };
        let h2 = Version::HTTP_2;
        for upstream_h2 in [true, false] {
            assert_eq!(
                exchange(h2, Some(&v("HTTP/1.1")), upstream_h2),
                down(Version::HTTP_11)
            );
            assert_eq!(
                exchange(h2, Some(&v("HTTP/1.1; absolute-form")), upstream_h2),
                down(Version::HTTP_11)
            );
            assert_eq!(
                exchange(h2, Some(&v("HTTP/1.0")), upstream_h2),
                down(Version::HTTP_10)
            );
        }
    }

    #[test]
    fn without_a_known_l5d_orig_proto_on_http2_the_connection_protocol_is_kept() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        let keep = |version| Exchange {
            version,
            downgraded: false,
        };
        let (h2, h11) = (Version::HTTP_2, Version::HTTP_11);
        assert_eq!(exchange(h2, None, true), keep(h2));
        assert_eq!(exchange(h2, None, false), keep(h11));
        assert_eq!(exchange(h2, Some(&v("HTTP/2")), true), keep(h2));
        assert_eq!(exchange(h2, Some(&v("http/1.1")), true), keep(h2));
        // Only HTTP/2 requests are downgraded: on HTTP/1 the field means nothing.
        assert_eq!(exchange(h11, Some(&v("HTTP/1.0")), false), keep(h11));
        assert_eq!(exchange(h11, Some(&v("HTTP/1.1")), true), keep(h2));
    }

    #[test]
    fn the_response_names_the_version_the_target_answered_in() {
        assert_eq!(orig_proto_of(Version::HTTP_11).unwrap(), "HTTP/1.1");
        assert_eq!(orig_proto_of(Version::HTTP_10).unwrap(), "HTTP/1.0");
        assert_eq!(orig_proto_of(Version::HTTP_2), None);
    }

    #[test]
    fn list_elements_are_trimmed_and_empty_ones_skipped() {
        let got: Vec<&[u8]> = elements(b" a ,\tb,, ,c\t").collect();
        assert_eq!(got, [&b"a"[..], b"b", b"c"]);
        assert_eq!(trim(b" \t "), b"");
    }

    #[test]
    fn forwarded_loop_detection() {
        let gw = "gw.identity";
        assert!(check_forwarded(["for=a;by=other"].into_iter(), gw).is_ok());
        assert!(check_forwarded(["for=a, by=gw.identity;for=b"].into_iter(), gw).is_err());
        assert!(check_forwarded(["By=\"gw.identity\""].into_iter(), gw).is_err());
        assert_eq!(
            forwarded_element(gw, "c", &Target::new("t.svc.x", 80)),
            "by=gw.identity;for=c;host=t.svc.x:80;proto=https"
        );
        assert_eq!(
            forwarded_element(gw, "spiffe://td/ns/a", &Target::new("t.svc.x", 80)),
            "by=gw.identity;for=\"spiffe://td/ns/a\";host=t.svc.x:80;proto=https"
        );
        assert_eq!(forwarded_value("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(forwarded_value(""), "\"\"");
        // A quoted SPIFFE gateway identity is still found.
        let spiffe_gw = "spiffe://td/gw";
        let element = forwarded_element(spiffe_gw, "c", &Target::new("t.svc.x", 80));
        assert!(check_forwarded([element.as_str()].into_iter(), spiffe_gw).is_err());
    }
}
