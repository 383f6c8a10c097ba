//! Fuzzes the gateway's TLS 1.3 record layer (mc-gateway/src/record.rs) as it reads a
//! client: record framing (`record_len`), decryption in place and what the plaintext holds
//! (`Opener::open`: content type, padding, alerts, key updates), and the record boundary
//! tracker (`RecordBoundary`). The input is a script of records a client sends: sealed ones
//! with any content type, content and padding (some tampered with), key updates, and raw
//! bytes. It must never panic, and:
//! - every untampered sealed record opens to exactly what RFC 8446 §5.2/§5.4 says it holds;
//! - a tampered record never opens;
//! - `RecordBoundary`, fed in reads of any size, sees the boundaries the headers say, and
//!   the ClientHello random where a handshake record carries one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mc_gateway::record::fuzzing::pair;
use mc_gateway::record::{HEADER, MAX_BODY, Opened, RecordBoundary, record_len};

/// What the script says a record should open to.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// Sealed untampered: this outcome (None: an error).
    Sealed(Option<Opened>, Vec<u8>),
    /// Tampered with: must not open.
    Tampered,
    /// Raw bytes: anything but a panic.
    Raw,
}

/// A little reader over the fuzz input.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn len(&mut self) -> usize {
        let hi = usize::from(self.byte().unwrap_or(0));
        let lo = usize::from(self.byte().unwrap_or(0));
        // Mostly small, up to a little past the largest record.
        if hi & 0x80 == 0 {
            lo
        } else {
            ((hi & 0x7f) << 8 | lo) % (MAX_BODY + 64)
        }
    }
}

/// What an untampered record of `content_type` holding `content` and `padding` zeros opens
/// to (None: an error), per RFC 8446.
fn expected(content: &[u8], content_type: u8, padding: usize) -> (Option<Opened>, Vec<u8>) {
    let mut inner = content.to_vec();
    inner.push(content_type);
    inner.resize(inner.len() + padding, 0);
    if inner.len() + 16 > MAX_BODY {
        return (None, Vec::new());
    }
    let Some(end) = inner.iter().rposition(|&b| b != 0) else {
        return (None, Vec::new());
    };
    let body = &inner[..end];
    let outcome = match inner[end] {
        23 => Some(Opened::Data(HEADER..HEADER + end)),
        21 => match body {
            [_, 0] => Some(Opened::CloseNotify),
            [_, 90] => Some(Opened::Data(0..0)),
            _ => None,
        },
        22 => match body {
            [24, 0, 0, 1, r @ (0 | 1)] => Some(Opened::KeyUpdate {
                update_requested: *r == 1,
            }),
            _ => None,
        },
        _ => None,
    };
    let data = match outcome {
        Some(Opened::Data(ref r)) if !r.is_empty() => body.to_vec(),
        _ => Vec::new(),
    };
    (outcome, data)
}

fuzz_target!(|data: &[u8]| {
    let mut script = Script(data);
    let Some(suite) = script.byte() else { return };
    let Ok((mut client, mut opener)) = pair(suite) else {
        return;
    };
    let mut wire = Vec::new();
    let mut records = Vec::new();
    // Key updates cost three HKDF expansions each: a few per input are enough.
    let mut updates = 0;
    while let Some(op) = script.byte() {
        if records.len() >= 32 {
            break;
        }
        let start = wire.len();
        let op = match op % 5 {
            3 if updates >= 4 => 1,
            3 => {
                updates += 1;
                3
            }
            op => op,
        };
        let expect = match op {
            0 => {
                let n = script.len();
                wire.extend_from_slice(script.bytes(n));
                Expect::Raw
            }
            1 | 2 => {
                let content_type = script.byte().unwrap_or(23);
                let n = script.len();
                let content = script.bytes(n).to_vec();
                let padding = usize::from(script.byte().unwrap_or(0));
                let Ok(record) = client.seal(&content, content_type, padding) else {
                    return;
                };
                wire.extend_from_slice(&record);
                let tamper = op == 2;
                if tamper {
                    let at = usize::from(script.byte().unwrap_or(0)) % record.len();
                    let bit = 1 << (script.byte().unwrap_or(0) % 8);
                    wire[start + at] ^= bit;
                    Expect::Tampered
                } else {
                    let (outcome, plain) = expected(&content, content_type, padding);
                    if matches!(outcome, Some(Opened::KeyUpdate { .. })) {
                        // The client moves its key on with the update it sent.
                        let Ok(()) = client.update() else { return };
                    }
                    Expect::Sealed(outcome, plain)
                }
            }
            3 => {
                let request = script.byte().unwrap_or(0) & 1;
                let Ok(record) = client.seal(&[24, 0, 0, 1, request], 22, 0) else {
                    return;
                };
                wire.extend_from_slice(&record);
                let Ok(()) = client.update() else { return };
                Expect::Sealed(
                    Some(Opened::KeyUpdate {
                        update_requested: request == 1,
                    }),
                    Vec::new(),
                )
            }
            _ => {
                // A record header of any type and length, then raw bytes.
                let kind = script.byte().unwrap_or(23);
                let n = script.len();
                let len = u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes();
                wire.extend_from_slice(&[kind, 3, 3, len[0], len[1]]);
                wire.extend_from_slice(script.bytes(n));
                Expect::Raw
            }
        };
        records.push((start, expect));
    }

    // The boundaries the headers say, walked independently.
    let mut boundaries = vec![0];
    let mut pos = 0;
    while pos + HEADER <= wire.len() {
        pos += HEADER + usize::from(u16::from_be_bytes([wire[pos + 3], wire[pos + 4]]));
        if pos <= wire.len() {
            boundaries.push(pos);
        }
    }
    let mut tracker = RecordBoundary::default();
    let mut fed = 0;
    let mut sizes = script.0.iter().cycle();
    while fed < wire.len() {
        let want = usize::from(*sizes.next().unwrap_or(&255)).max(1);
        let take = tracker.next_read_limit().min(want).min(wire.len() - fed);
        assert!(take >= 1);
        tracker.seen(&wire[fed..fed + take]);
        fed += take;
        assert_eq!(tracker.at_boundary(), boundaries.contains(&fed), "at {fed}");
    }
    if wire.first() == Some(&22) && boundaries.len() > 1 && boundaries[1] >= HEADER + 38 {
        let random = tracker.client_random().expect("a whole ClientHello random");
        assert_eq!(random.as_slice(), &wire[HEADER + 6..HEADER + 38]);
    }

    // The gateway reads the records in order, as opaque.rs and record_stream.rs do, and
    // stops at the first error or close_notify.
    let mut at = 0;
    for (start, expect) in &records {
        if at != *start {
            // Raw bytes before made the framing diverge from the script: anything goes.
            break;
        }
        let len = match record_len(&wire[at..]) {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(_) => {
                assert!(
                    !matches!(expect, Expect::Sealed(Some(_), _)),
                    "header refused"
                );
                break;
            }
        };
        if at + len > wire.len() {
            break;
        }
        let mut record = wire[at..at + len].to_vec();
        let got = opener.open(&mut record);
        match expect {
            Expect::Sealed(want, plain) => {
                assert_eq!(got.as_ref().ok(), want.as_ref(), "record at {at}");
                if let Ok(Opened::Data(r)) = &got {
                    if !r.is_empty() {
                        assert_eq!(&record[r.clone()], plain.as_slice());
                    }
                }
            }
            Expect::Tampered => assert!(got.is_err(), "a tampered record opened"),
            Expect::Raw => {
                if let Ok(Opened::Data(r)) = &got {
                    assert!(r.end <= len);
                }
                if got.is_ok() {
                    // Raw bytes that open (a replayed ciphertext) leave the script's keys
                    // behind: nothing more is known.
                    break;
                }
            }
        }
        match got {
            Ok(Opened::CloseNotify) | Err(_) => break,
            Ok(_) => at += len,
        }
    }
});
