//! TLS 1.3 record protection (RFC 8446 §5) for opaque streams the gateway takes over from
//! rustls once the handshake is done: the kTLS model, in user space.
//!
//! rustls does the handshake, verifies the client and derives the keys; for an opaque splice
//! the gateway then protects the records itself, so that it can read many records per system
//! call, decrypt them in place and hand the plaintext to the backend in one `writev`, with no
//! copy into an intermediate plaintext buffer. Key updates (§4.6.3) are followed in both
//! directions from the traffic secrets rustls logs ([`SecretLog`]); the sequence numbers and
//! the keys are checked against what rustls itself extracts ([`Keys::take_over`]).
//!
//! [`RecordBoundary`] follows the record framing so that [`crate::io::Tracked`] can serve
//! rustls whole records until the connection's path is known: when the records are taken over,
//! rustls holds no part of one.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use ring::{aead, hkdf};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets};

use crate::{Error, Result};

/// Bytes of a record header: type, legacy version, length.
pub const HEADER: usize = 5;
/// The largest plaintext a record carries.
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Bytes of an AEAD tag (every TLS 1.3 suite).
pub const TAG: usize = 16;
/// The largest protected record body a peer may send: plaintext, content type, padding, tag.
pub const MAX_BODY: usize = MAX_PLAINTEXT + 256;
/// The largest record a peer may send, header included.
pub const MAX_RECORD: usize = HEADER + MAX_BODY;
/// The bytes a full record sealed here takes: header, plaintext, content type, tag.
pub const SEALED_FULL: usize = HEADER + MAX_PLAINTEXT + 1 + TAG;

const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const KEY_UPDATE: u8 = 24;
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;

/// Records sealed under one key before the gateway updates it (well below the AES-GCM
/// confidentiality limit of 2^24.5 records).
const SEAL_LIMIT: u64 = 1 << 23;

/// The TLS 1.3 cipher suites the gateway's provider offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Suite {
    fn of(secrets: &ConnectionTrafficSecrets) -> Option<Self> {
        match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { .. } => Some(Self::Aes128Gcm),
            ConnectionTrafficSecrets::Aes256Gcm { .. } => Some(Self::Aes256Gcm),
            ConnectionTrafficSecrets::Chacha20Poly1305 { .. } => Some(Self::Chacha20Poly1305),
            _ => None,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aead::AES_128_GCM,
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Self::Aes256Gcm => hkdf::HKDF_SHA384,
            Self::Aes128Gcm | Self::Chacha20Poly1305 => hkdf::HKDF_SHA256,
        }
    }
}

/// An output length for HKDF-Expand.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, into `out`.
fn expand_label(alg: hkdf::Algorithm, secret: &[u8], label: &[u8], out: &mut [u8]) -> Result<()> {
    let length = u16::try_from(out.len()).unwrap_or(u16::MAX).to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).unwrap_or(u8::MAX)];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    hkdf::Prk::new_less_safe(alg, secret)
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| record_error("deriving traffic keys failed (HKDF output too long)"))
}

/// Alert descriptions (RFC 8446 §6) the gateway sends when it ends a connection.
pub const UNEXPECTED_MESSAGE: u8 = 10;
/// The record failed authentication.
pub const BAD_RECORD_MAC: u8 = 20;
/// A record or message could not be parsed, or the stream ended inside one.
pub const DECODE_ERROR: u8 = 50;
/// The gateway could not set up or use its keys.
pub const INTERNAL_ERROR: u8 = 80;

/// An [`Error::Record`] that ends the connection with `alert`.
pub fn error(alert: u8, why: &str) -> Error {
    Error::Record {
        alert,
        why: why.to_owned(),
    }
}

fn record_error(why: &str) -> Error {
    error(INTERNAL_ERROR, why)
}

/// One direction's traffic secret, the key and IV derived from it, and the record sequence
/// number.
pub struct Direction {
    suite: Suite,
    secret: Vec<u8>,
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl std::fmt::Debug for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direction")
            .field("suite", &self.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.secret.fill(0);
    }
}

impl Direction {
    /// Keys from `secret` (a TLS 1.3 application traffic secret), starting at record `seq`.
    fn new(suite: Suite, secret: Vec<u8>, seq: u64) -> Result<Self> {
        let (key, iv) = derive(suite, &secret)?;
        Ok(Self {
            suite,
            secret,
            key,
            iv,
            seq,
        })
    }

    /// Moves to the next traffic secret (a key update, RFC 8446 §7.2).
    fn update(&mut self) -> Result<()> {
        let mut next = vec![0u8; self.secret.len()];
        expand_label(self.suite.hkdf(), &self.secret, b"traffic upd", &mut next)?;
        let (key, iv) = derive(self.suite, &next)?;
        self.secret.fill(0);
        self.secret = next;
        self.key = key;
        self.iv = iv;
        self.seq = 0;
        Ok(())
    }

    fn nonce(&mut self) -> Result<aead::Nonce> {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| record_error("record sequence number exhausted"))?;
        Ok(aead::Nonce::assume_unique_for_key(nonce))
    }
}

fn derive(suite: Suite, secret: &[u8]) -> Result<(aead::LessSafeKey, [u8; aead::NONCE_LEN])> {
    let alg = suite.aead();
    let mut key = vec![0u8; alg.key_len()];
    expand_label(suite.hkdf(), secret, b"key", &mut key)?;
    let mut iv = [0u8; aead::NONCE_LEN];
    expand_label(suite.hkdf(), secret, b"iv", &mut iv)?;
    let unbound = aead::UnboundKey::new(alg, &key)
        .map_err(|_| record_error("traffic key has the wrong length"))?;
    key.fill(0);
    Ok((aead::LessSafeKey::new(unbound), iv))
}

/// What an opened record held.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Application data at this range of the record (possibly empty).
    Data(Range<usize>),
    /// The peer's `close_notify`: no more data follows.
    CloseNotify,
    /// A key update; the receiving key has moved on. `update_requested`: the peer asks for
    /// one in the other direction too.
    KeyUpdate {
        /// The peer asked the gateway to update its sending key as well.
        update_requested: bool,
    },
}

/// The length of the record starting at `buf`, once its header is there; an error for a
/// header no TLS 1.3 peer sends after the handshake.
pub fn record_len(buf: &[u8]) -> Result<Option<usize>> {
    let Some(header) = buf.get(..HEADER) else {
        return Ok(None);
    };
    if header[0] != APPLICATION_DATA {
        return Err(error(
            UNEXPECTED_MESSAGE,
            &format!(
                "record of content type {} after the handshake (only protected records, type 23, are valid)",
                header[0]
            ),
        ));
    }
    let body = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if !(TAG + 1..=MAX_BODY).contains(&body) {
        return Err(error(
            DECODE_ERROR,
            &format!("record length {body} is outside 17..={MAX_BODY}"),
        ));
    }
    Ok(Some(HEADER + body))
}

/// Receives records: decrypts them in place.
#[derive(Debug)]
pub struct Opener(Direction);

impl Opener {
    /// Opens one whole record (`record_len` bytes, header included) in place.
    pub fn open(&mut self, record: &mut [u8]) -> Result<Opened> {
        let (header, body) = record.split_at_mut(HEADER);
        let aad = aead::Aad::from(<[u8; HEADER]>::try_from(&*header).unwrap_or_default());
        let nonce = self.0.nonce()?;
        let plain = self.0.key.open_in_place(nonce, aad, body).map_err(|_| {
            error(
                BAD_RECORD_MAC,
                "record failed authentication (bad_record_mac)",
            )
        })?;
        let Some(end) = plain.iter().rposition(|&b| b != 0) else {
            return Err(error(UNEXPECTED_MESSAGE, "record has no content type"));
        };
        match plain[end] {
            APPLICATION_DATA => Ok(Opened::Data(HEADER..HEADER + end)),
            ALERT => alert(&plain[..end]),
            HANDSHAKE => self.handshake(&plain[..end]),
            other => Err(error(
                UNEXPECTED_MESSAGE,
                &format!("protected record of content type {other} after the handshake"),
            )),
        }
    }

    fn handshake(&mut self, message: &[u8]) -> Result<Opened> {
        let update_requested = match message {
            [KEY_UPDATE, 0, 0, 1, 0] => false,
            [KEY_UPDATE, 0, 0, 1, 1] => true,
            [kind, ..] => {
                return Err(error(
                    UNEXPECTED_MESSAGE,
                    &format!(
                        "handshake message of type {kind} after the handshake (only key_update, 24, is accepted)"
                    ),
                ));
            }
            [] => return Err(error(DECODE_ERROR, "empty handshake record")),
        };
        self.0.update()?;
        Ok(Opened::KeyUpdate { update_requested })
    }
}

fn alert(payload: &[u8]) -> Result<Opened> {
    match payload {
        [_, CLOSE_NOTIFY] => Ok(Opened::CloseNotify),
        [_, USER_CANCELED] => Ok(Opened::Data(0..0)),
        [_, desc] => Err(error(
            CLOSE_NOTIFY,
            &format!("the client sent alert {desc}"),
        )),
        _ => Err(error(DECODE_ERROR, "malformed alert record")),
    }
}

/// Sends records: encrypts them in place.
#[derive(Debug)]
pub struct Sealer(Direction);

impl Sealer {
    /// Seals `buf[HEADER..HEADER + len]` in place into an application-data record; `buf` has
    /// room for the content type and the tag after it. Returns the record's length.
    pub fn seal_data(&mut self, buf: &mut [u8], len: usize) -> Result<usize> {
        self.seal(buf, len, APPLICATION_DATA)
    }

    /// Writes a sealed `close_notify` alert into `buf` (at least 24 bytes). Returns its length.
    pub fn seal_close_notify(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.seal_with(buf, &[1, CLOSE_NOTIFY], ALERT)
    }

    /// Writes a sealed fatal alert `desc` (a close_notify for 0) into `buf` (at least 24
    /// bytes). Returns its length.
    pub fn seal_fatal_alert(&mut self, buf: &mut [u8], desc: u8) -> Result<usize> {
        let level = if desc == CLOSE_NOTIFY { 1 } else { 2 };
        self.seal_with(buf, &[level, desc], ALERT)
    }

    /// Writes a sealed key update (not asking the peer for one) into `buf` (at least 27
    /// bytes), then moves the sending key on. Returns its length.
    pub fn seal_key_update(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = self.seal_with(buf, &[KEY_UPDATE, 0, 0, 1, 0], HANDSHAKE)?;
        self.0.update()?;
        Ok(n)
    }

    /// Like [`Self::seal_key_update`], asking the peer to update its key too (tests play the
    /// client with it).
    #[cfg(test)]
    pub(crate) fn seal_key_update_request(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = self.seal_with(buf, &[KEY_UPDATE, 0, 0, 1, 1], HANDSHAKE)?;
        self.0.update()?;
        Ok(n)
    }

    /// Whether the sending key has protected enough records that it should be updated.
    pub fn wants_key_update(&self) -> bool {
        self.0.seq >= SEAL_LIMIT
    }

    fn seal_with(&mut self, buf: &mut [u8], content: &[u8], content_type: u8) -> Result<usize> {
        let room = buf
            .get_mut(HEADER..HEADER + content.len())
            .ok_or_else(|| record_error("no room for a control record"))?;
        room.copy_from_slice(content);
        self.seal(buf, content.len(), content_type)
    }

    fn seal(&mut self, buf: &mut [u8], len: usize, content_type: u8) -> Result<usize> {
        let total = HEADER + len + 1 + TAG;
        if len > MAX_PLAINTEXT || buf.len() < total {
            return Err(record_error("record buffer too small"));
        }
        let body = u16::try_from(len + 1 + TAG)
            .unwrap_or(u16::MAX)
            .to_be_bytes();
        let header = [APPLICATION_DATA, 3, 3, body[0], body[1]];
        buf[..HEADER].copy_from_slice(&header);
        buf[HEADER + len] = content_type;
        let nonce = self.0.nonce()?;
        let tag = self
            .0
            .key
            .seal_in_place_separate_tag(
                nonce,
                aead::Aad::from(header),
                &mut buf[HEADER..HEADER + len + 1],
            )
            .map_err(|_| record_error("sealing a record failed"))?;
        buf[HEADER + len + 1..total].copy_from_slice(tag.as_ref());
        Ok(total)
    }
}

/// Both directions of a connection taken over from rustls.
#[derive(Debug)]
pub struct Keys {
    /// Client → gateway.
    pub opener: Opener,
    /// Gateway → client.
    pub sealer: Sealer,
}

impl Keys {
    /// Builds both directions from the traffic secrets `logged` for the connection and the
    /// keys and sequence numbers rustls `extracted`; the keys derived from the secrets must
    /// be the ones rustls used.
    pub fn take_over(mut logged: TrafficSecrets, extracted: ExtractedSecrets) -> Result<Self> {
        let (rx_seq, rx) = extracted.rx;
        let (tx_seq, tx) = extracted.tx;
        let suite = Suite::of(&rx).ok_or_else(|| record_error("unknown cipher suite"))?;
        let opener = Direction::new(suite, std::mem::take(&mut logged.client), rx_seq)?;
        let sealer = Direction::new(suite, std::mem::take(&mut logged.server), tx_seq)?;
        if !same_keys(&opener, &rx) || !same_keys(&sealer, &tx) {
            return Err(record_error(
                "keys derived from the logged traffic secrets differ from rustls' keys",
            ));
        }
        Ok(Self {
            opener: Opener(opener),
            sealer: Sealer(sealer),
        })
    }
}

#[cfg(test)]
impl Keys {
    /// The gateway's keys from fixed secrets (AES-128-GCM), and the client's ends of them:
    /// (gateway keys, client sealer, client opener).
    #[allow(clippy::unwrap_used)]
    pub(crate) fn test_pair() -> (Self, Sealer, Opener) {
        let dir = |secret: u8| Direction::new(Suite::Aes128Gcm, vec![secret; 32], 0).unwrap();
        let keys = Self {
            opener: Opener(dir(1)),
            sealer: Sealer(dir(2)),
        };
        (keys, Sealer(dir(1)), Opener(dir(2)))
    }
}

/// Whether `dir` seals with the key and IV rustls extracted (checked by sealing one block
/// with both: ring does not expose its key bytes).
fn same_keys(dir: &Direction, extracted: &ConnectionTrafficSecrets) -> bool {
    let (key, iv) = match extracted {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
        _ => return false,
    };
    let Ok(unbound) = aead::UnboundKey::new(dir.suite.aead(), key.as_ref()) else {
        return false;
    };
    let theirs = aead::LessSafeKey::new(unbound);
    let probe = |k: &aead::LessSafeKey| {
        let nonce = aead::Nonce::assume_unique_for_key([0; aead::NONCE_LEN]);
        let mut block = [0u8; 16];
        k.seal_in_place_separate_tag(nonce, aead::Aad::empty(), &mut block)
            .map(|tag| (block, tag.as_ref().to_vec()))
            .ok()
    };
    dir.iv.as_slice() == iv.as_ref()
        && probe(&dir.key).is_some()
        && probe(&dir.key) == probe(&theirs)
}

/// The two application traffic secrets of one connection, as rustls logged them.
pub struct TrafficSecrets {
    client: Vec<u8>,
    server: Vec<u8>,
    /// Two handshakes logged under the same client random: neither gets these.
    conflict: bool,
    /// When the first of them was logged.
    logged: Instant,
}

impl TrafficSecrets {
    fn logged_now() -> Self {
        Self {
            client: Vec::new(),
            server: Vec::new(),
            conflict: false,
            logged: Instant::now(),
        }
    }
}

impl std::fmt::Debug for TrafficSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrafficSecrets(..)")
    }
}

impl Drop for TrafficSecrets {
    fn drop(&mut self) {
        self.client.fill(0);
        self.server.fill(0);
    }
}

/// Handshakes whose traffic secrets a [`SecretLog`] keeps at most (a bound for handshakes
/// that end without their connection taking them).
const SECRET_LOG_CAP: usize = 16 * 1024;
/// How long logged secrets wait for their connection before a full log drops them: far beyond
/// any handshake (their connection failed or timed out).
const SECRET_LOG_MAX_AGE: Duration = Duration::from_secs(120);

/// Receives the application traffic secrets of each handshake from rustls (as its
/// [`rustls::KeyLog`]) until the connection takes them by its client random. Nothing is
/// written anywhere; a connection that finds no secrets keeps rustls for its records.
#[derive(Default)]
pub struct SecretLog {
    map: Mutex<HashMap<[u8; 32], TrafficSecrets>>,
    /// Set to the number of waiting handshakes on every change (see [`Self::report_to`]).
    waiting: OnceLock<Gauge>,
}

impl std::fmt::Debug for SecretLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretLog(..)")
    }
}

impl SecretLog {
    /// Takes the secrets logged for the handshake with `client_random`, if both are there.
    pub fn take(&self, client_random: &[u8; 32]) -> Option<TrafficSecrets> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let secrets = map.remove(client_random)?;
        self.report(map.len());
        let complete = !secrets.client.is_empty() && !secrets.server.is_empty();
        (complete && !secrets.conflict).then_some(secrets)
    }

    /// From now on, keeps `gauge` at the number of handshakes whose secrets wait (the first
    /// gauge given stays).
    pub fn report_to(&self, gauge: Gauge) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.waiting.set(gauge);
        self.report(map.len());
    }

    fn report(&self, waiting: usize) {
        if let Some(gauge) = self.waiting.get() {
            gauge.set(i64::try_from(waiting).unwrap_or(i64::MAX));
        }
    }
}

impl rustls::KeyLog for SecretLog {
    fn will_log(&self, label: &str) -> bool {
        matches!(label, "CLIENT_TRAFFIC_SECRET_0" | "SERVER_TRAFFIC_SECRET_0")
    }

    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let Ok(random) = <[u8; 32]>::try_from(client_random) else {
            return;
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SECRET_LOG_CAP && !map.contains_key(&random) {
            make_room(&mut map);
        }
        let client = match label {
            "CLIENT_TRAFFIC_SECRET_0" => true,
            "SERVER_TRAFFIC_SECRET_0" => false,
            _ => return,
        };
        let entry = map.entry(random).or_insert_with(TrafficSecrets::logged_now);
        let slot = if client {
            &mut entry.client
        } else {
            &mut entry.server
        };
        // A second handshake with the same client random (a replayed or forged ClientHello)
        // must not hand either connection the other's secrets: both keep rustls.
        let conflict = !slot.is_empty();
        *slot = secret.to_vec();
        entry.conflict |= conflict;
        self.report(map.len());
    }
}

/// Makes room in a full log: the secrets of handshakes older than [`SECRET_LOG_MAX_AGE`] go,
/// so that handshakes in flight keep theirs; if every entry is recent, all go.
fn make_room(map: &mut HashMap<[u8; 32], TrafficSecrets>) {
    map.retain(|_, s| s.logged.elapsed() < SECRET_LOG_MAX_AGE);
    if map.len() >= SECRET_LOG_CAP {
        map.clear();
    }
}

/// Follows the record framing of the bytes a connection reads, so that reads can stop at
/// record boundaries, and picks the client random out of the ClientHello.
#[derive(Debug, Default, Clone)]
pub struct RecordBoundary {
    header: [u8; HEADER],
    header_got: usize,
    /// Body bytes of the current record not yet read.
    left: usize,
    /// Body bytes of the current record read so far.
    body_pos: usize,
    records: u64,
    random: [u8; 32],
    random_got: usize,
}

/// Where the client random sits in the first record's body: after the handshake type (1),
/// length (3) and legacy version (2).
const RANDOM_AT: usize = 6;

impl RecordBoundary {
    /// How many bytes the next read may take without crossing a record boundary (at least 1).
    pub fn next_read_limit(&self) -> usize {
        if self.left > 0 {
            self.left
        } else {
            HEADER - self.header_got
        }
    }

    /// Whether everything read so far ends exactly at a record boundary.
    pub fn at_boundary(&self) -> bool {
        self.left == 0 && self.header_got == 0
    }

    /// The ClientHello's random, once read.
    pub fn client_random(&self) -> Option<[u8; 32]> {
        (self.random_got == 32).then_some(self.random)
    }

    /// Accounts for bytes just read (at most [`Self::next_read_limit`] of them).
    pub fn seen(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left == 0 {
                let take = (HEADER - self.header_got).min(bytes.len());
                self.header[self.header_got..self.header_got + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_got += take;
                bytes = &bytes[take..];
                if self.header_got == HEADER {
                    self.header_got = 0;
                    self.left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                    self.body_pos = 0;
                }
                continue;
            }
            let take = self.left.min(bytes.len());
            if self.records == 0 && self.header[0] == HANDSHAKE {
                self.capture_random(&bytes[..take]);
            }
            self.left -= take;
            self.body_pos += take;
            bytes = &bytes[take..];
            if self.left == 0 {
                self.records += 1;
            }
        }
    }

    fn capture_random(&mut self, chunk: &[u8]) {
        for (i, &b) in chunk.iter().enumerate() {
            let at = self.body_pos + i;
            if (RANDOM_AT..RANDOM_AT + 32).contains(&at) {
                self.random[at - RANDOM_AT] = b;
                self.random_got += 1;
            }
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn pair(suite: Suite) -> (Sealer, Opener) {
        let secret = vec![7u8; if suite == Suite::Aes256Gcm { 48 } else { 32 }];
        (
            Sealer(Direction::new(suite, secret.clone(), 0).unwrap()),
            Opener(Direction::new(suite, secret, 0).unwrap()),
        )
    }

    #[test]
    fn hkdf_expand_label_matches_rfc8448() {
        // RFC 8448 §3 (simple 1-RTT handshake): the server's handshake traffic secret and
        // the key and IV derived from it.
        let secret = hex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
        let mut key = [0u8; 16];
        expand_label(hkdf::HKDF_SHA256, &secret, b"key", &mut key).unwrap();
        assert_eq!(key.to_vec(), hex("3fce516009c21727d0f2e4e86ee403bc"));
        let mut iv = [0u8; 12];
        expand_label(hkdf::HKDF_SHA256, &secret, b"iv", &mut iv).unwrap();
        assert_eq!(iv.to_vec(), hex("5d313eb2671276ee13000b30"));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sealed_records_open_in_every_suite() {
        for suite in [Suite::Aes128Gcm, Suite::Aes256Gcm, Suite::Chacha20Poly1305] {
            let (mut sealer, mut opener) = pair(suite);
            for len in [0, 1, 100, MAX_PLAINTEXT] {
                let mut buf = vec![0u8; SEALED_FULL];
                buf[HEADER..HEADER + len].fill(0xab);
                let n = sealer.seal_data(&mut buf, len).unwrap();
                assert_eq!(record_len(&buf).unwrap(), Some(n));
                assert_ne!(buf[HEADER], 0xab, "{suite:?}: sealed in place");
                let range = match opener.open(&mut buf[..n]).unwrap() {
                    Opened::Data(r) => r,
                    other => panic!("{other:?}"),
                };
                assert_eq!(range.len(), len);
                assert!(buf[range].iter().all(|&b| b == 0xab));
            }
        }
    }

    #[test]
    fn a_tampered_or_replayed_record_fails_authentication() {
        let (mut sealer, mut opener) = pair(Suite::Aes128Gcm);
        let mut buf = vec![0u8; 64];
        let n = sealer.seal_data(&mut buf, 10).unwrap();
        let mut tampered = buf[..n].to_vec();
        tampered[HEADER + 3] ^= 1;
        assert!(matches!(
            opener.open(&mut tampered),
            Err(Error::Record {
                alert: BAD_RECORD_MAC,
                ..
            })
        ));
        // The sequence number moved on: the untouched record no longer opens either.
        let mut replay = buf[..n].to_vec();
        assert!(opener.open(&mut replay).is_err());
    }

    #[test]
    fn key_updates_move_both_sides_on() {
        let (mut sealer, mut opener) = pair(Suite::Chacha20Poly1305);
        let mut buf = vec![0u8; 128];
        let n = sealer.seal_key_update(&mut buf).unwrap();
        assert_eq!(
            opener.open(&mut buf[..n]).unwrap(),
            Opened::KeyUpdate {
                update_requested: false
            }
        );
        let n = sealer.seal_data(&mut buf, 3).unwrap();
        assert_eq!(
            opener.open(&mut buf[..n]).unwrap(),
            Opened::Data(HEADER..HEADER + 3)
        );
        let n = sealer.seal_close_notify(&mut buf).unwrap();
        assert_eq!(opener.open(&mut buf[..n]).unwrap(), Opened::CloseNotify);
    }

    #[test]
    fn control_records_are_checked() {
        let (mut sealer, mut opener) = pair(Suite::Aes128Gcm);
        let mut buf = vec![0u8; 128];
        let n = sealer.seal_fatal_alert(&mut buf, BAD_RECORD_MAC).unwrap();
        let err = opener.open(&mut buf[..n]).unwrap_err().to_string();
        assert!(err.contains("alert 20"), "{err}");
        let n = sealer
            .seal_with(&mut buf, &[1, 0, 0, 0], HANDSHAKE)
            .unwrap();
        let err = opener.open(&mut buf[..n]).unwrap_err().to_string();
        assert!(err.contains("handshake message of type 1"), "{err}");
        let n = sealer.seal_with(&mut buf, &[], 0).unwrap();
        let err = opener.open(&mut buf[..n]).unwrap_err().to_string();
        assert!(err.contains("no content type"), "{err}");
    }

    #[test]
    fn record_headers_are_checked() {
        assert_eq!(record_len(&[23, 3, 3, 0]).unwrap(), None);
        assert_eq!(record_len(&[23, 3, 3, 0, 17]).unwrap(), Some(22));
        assert!(record_len(&[22, 3, 3, 0, 17]).is_err());
        assert!(record_len(&[23, 3, 3, 0, 16]).is_err());
        assert!(record_len(&[23, 3, 3, 0x41, 1]).is_err());
    }

    #[test]
    fn boundaries_and_the_client_random_are_followed_byte_by_byte() {
        let mut hello = vec![22, 3, 1, 0, 40, 1, 0, 0, 36, 3, 3];
        hello.extend(1..=32u8);
        hello.extend([0, 0]);
        let mut next = vec![23, 3, 3, 0, 2, 9, 9];
        let mut whole = hello.clone();
        whole.append(&mut next);
        let mut b = RecordBoundary::default();
        let mut i = 0;
        while i < whole.len() {
            let take = b.next_read_limit().min(3);
            b.seen(&whole[i..i + take]);
            i += take;
            if i == hello.len() {
                assert!(b.at_boundary());
            } else if i < whole.len() {
                assert!(!b.at_boundary(), "at {i}");
            }
        }
        assert!(b.at_boundary());
        let want: Vec<u8> = (1..=32).collect();
        assert_eq!(b.client_random().unwrap().to_vec(), want);
    }

    #[test]
    fn arbitrary_bytes_are_rejected_without_panicking() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..20_000 {
            let len = (next() % 300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 && bytes.len() >= HEADER + 17 {
                // A well-formed header over a random body.
                let body = u16::try_from(bytes.len() - HEADER).unwrap().to_be_bytes();
                bytes[..HEADER].copy_from_slice(&[23, 3, 3, body[0], body[1]]);
            }
            if let Ok(Some(n)) = record_len(&bytes)
                && n <= bytes.len()
            {
                assert!(pair(Suite::Aes128Gcm).1.open(&mut bytes[..n]).is_err());
            }
            let mut b = RecordBoundary::default();
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let take = b.next_read_limit().min(rest.len());
                b.seen(&rest[..take]);
                rest = &rest[take..];
            }
        }
    }

    #[test]
    fn every_flipped_bit_of_a_record_fails_authentication() {
        let (mut sealer, _) = pair(Suite::Aes256Gcm);
        let mut buf = vec![0u8; 64];
        let n = sealer.seal_data(&mut buf, 20).unwrap();
        for pos in 0..n {
            for bit in 0..8 {
                let mut r = buf[..n].to_vec();
                r[pos] ^= 1 << bit;
                let (_, mut opener) = pair(Suite::Aes256Gcm);
                assert!(opener.open(&mut r).is_err(), "byte {pos} bit {bit}");
            }
        }
        let (_, mut opener) = pair(Suite::Aes256Gcm);
        assert!(opener.open(&mut buf[..n]).is_ok());
    }

    #[test]
    fn the_secret_log_hands_out_complete_pairs_once() {
        use rustls::KeyLog;
        let log = SecretLog::default();
        assert!(log.will_log("CLIENT_TRAFFIC_SECRET_0"));
        assert!(!log.will_log("CLIENT_HANDSHAKE_TRAFFIC_SECRET"));
        let random = [5u8; 32];
        log.log("CLIENT_TRAFFIC_SECRET_0", &random, &[1; 32]);
        assert!(log.take(&random).is_none(), "half a pair is not handed out");
        log.log("CLIENT_TRAFFIC_SECRET_0", &random, &[1; 32]);
        log.log("SERVER_TRAFFIC_SECRET_0", &random, &[2; 32]);
        let s = log.take(&random).unwrap();
        assert_eq!((s.client[0], s.server[0]), (1, 2));
        assert!(log.take(&random).is_none());
        assert_eq!(format!("{s:?}"), "TrafficSecrets(..)");
        // Two handshakes under one client random: neither connection gets secrets.
        for label in [
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
            "CLIENT_TRAFFIC_SECRET_0",
        ] {
            log.log(label, &random, &[3; 32]);
        }
        log.log("SERVER_TRAFFIC_SECRET_0", &random, &[4; 32]);
        assert!(
            log.take(&random).is_none(),
            "a conflicting entry was handed out"
        );
    }

    #[test]
    fn the_waiting_gauge_follows_every_change_of_the_log() {
        use rustls::KeyLog;
        let log = SecretLog::default();
        log.log("CLIENT_TRAFFIC_SECRET_0", &[1; 32], &[7; 32]);
        let gauge = Gauge::default();
        log.report_to(gauge.clone());
        assert_eq!(gauge.get(), 1, "what the log held before");
        log.log("SERVER_TRAFFIC_SECRET_0", &[1; 32], &[8; 32]);
        assert_eq!(gauge.get(), 1, "the other half of the same handshake");
        log.log("CLIENT_TRAFFIC_SECRET_0", &[2; 32], &[7; 32]);
        assert_eq!(gauge.get(), 2);
        assert!(log.take(&[1; 32]).is_some());
        assert_eq!(gauge.get(), 1);
        assert!(log.take(&[3; 32]).is_none());
        assert_eq!(gauge.get(), 1, "taking what is not there changes nothing");
        assert!(
            log.take(&[2; 32]).is_none(),
            "half a handshake is not handed out"
        );
        assert_eq!(gauge.get(), 0, "but it leaves the log");
    }

    #[test]
    fn a_full_secret_log_drops_stale_handshakes_and_keeps_those_in_flight() {
        use rustls::KeyLog;
        let log = SecretLog::default();
        let Some(long_ago) = Instant::now().checked_sub(SECRET_LOG_MAX_AGE * 2) else {
            return; // a clock this young cannot hold a stale entry
        };
        {
            let mut map = log.map.lock().unwrap();
            for i in 0..SECRET_LOG_CAP - 1 {
                let mut random = [0u8; 32];
                random[..8].copy_from_slice(&(i as u64).to_le_bytes());
                random[31] = 1;
                let mut stale = TrafficSecrets::logged_now();
                stale.logged = long_ago;
                map.insert(random, stale);
            }
        }
        // A handshake in flight: half its pair is logged when the log fills up.
        let in_flight = [7u8; 32];
        log.log("CLIENT_TRAFFIC_SECRET_0", &in_flight, &[1; 32]);
        let newcomer = [8u8; 32];
        log.log("CLIENT_TRAFFIC_SECRET_0", &newcomer, &[3; 32]);
        assert_eq!(log.map.lock().unwrap().len(), 2, "the stale entries went");
        log.log("SERVER_TRAFFIC_SECRET_0", &in_flight, &[2; 32]);
        assert!(
            log.take(&in_flight).is_some(),
            "the handshake in flight kept its secrets"
        );

        // A log full of recent entries still stays bounded.
        {
            let mut map = log.map.lock().unwrap();
            for i in 0..SECRET_LOG_CAP {
                let mut random = [0u8; 32];
                random[..8].copy_from_slice(&(i as u64).to_le_bytes());
                random[31] = 2;
                map.insert(random, TrafficSecrets::logged_now());
            }
        }
        log.log("CLIENT_TRAFFIC_SECRET_0", &[9u8; 32], &[1; 32]);
        assert_eq!(log.map.lock().unwrap().len(), 1);
    }
}
