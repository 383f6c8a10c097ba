//! Packet captures on the testbed's links: a real `tcpdump` writing a pcap file, and a reader
//! that reassembles each TCP flow's payload so a test can check what crossed the link (every
//! byte inside TLS records, no plaintext marker anywhere).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// One direction of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// Source address and port.
    pub src: (Ipv4Addr, u16),
    /// Destination address and port.
    pub dst: (Ipv4Addr, u16),
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} -> {}:{}",
            self.src.0, self.src.1, self.dst.0, self.dst.1
        )
    }
}

/// One direction of a TCP connection as captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    /// The payload, reassembled in sequence order.
    pub bytes: Vec<u8>,
    /// Whether the connection opened during the capture (its SYN was seen), so `bytes` starts
    /// at the first byte sent.
    pub opened: bool,
}

/// A running capture.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    path: PathBuf,
}

fn failed(what: &str, detail: impl Into<String>) -> Error {
    Error::Network {
        what: what.to_owned(),
        detail: detail.into(),
    }
}

impl Capture {
    /// Starts `tcpdump` on interface `iface`, capturing TCP into `dir/<iface>.pcap`; returns once
    /// it listens. Needs tcpdump (`make setup` installs it) and the rights to capture.
    pub fn start(iface: &str, dir: &Path) -> Result<Capture> {
        let path = dir.join(format!("{iface}.pcap"));
        let child = Command::new("tcpdump")
            .args(["-i", iface, "-Z", "root", "-U", "-n", "-s", "0", "-w"])
            .arg(&path)
            .arg("tcp")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                failed(
                    &format!("start tcpdump on {iface}"),
                    format!("{e}; fix: run `make setup`, which installs tcpdump"),
                )
            })?;
        let mut capture = Capture { child, path };
        let start = Instant::now();
        // The pcap header is written once tcpdump listens.
        while std::fs::metadata(&capture.path).map_or(0, |m| m.len()) < 24 {
            if let Ok(Some(status)) = capture.child.try_wait() {
                return Err(failed(
                    &format!("capture on {iface}"),
                    format!("tcpdump exited with {status}"),
                ));
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = capture.child.kill();
                return Err(failed(
                    &format!("capture on {iface}"),
                    "tcpdump did not start within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Give the kernel filter a moment after the header.
        std::thread::sleep(Duration::from_millis(300));
        Ok(capture)
    }

    /// Stops the capture and returns every TCP flow, its payload reassembled in sequence order
    /// (retransmissions counted once).
    pub fn stop(mut self) -> Result<BTreeMap<FlowKey, Flow>> {
        let pid = i32::try_from(self.child.id()).unwrap_or(0);
        // SIGINT: tcpdump flushes and exits.
        // SAFETY: kill(2) takes plain integers and has no memory effects here.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let _ = self.child.wait();
        let bytes = std::fs::read(&self.path).map_err(|e| Error::Io {
            action: "read",
            what: self.path.display().to_string(),
            source: e,
        })?;
        flows(&bytes).map_err(|e| failed(&format!("read the capture {}", self.path.display()), e))
    }
}

fn u16_be(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_be(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The TCP flows of a pcap file (Ethernet, IPv4): each direction's payload in sequence order.
pub fn flows(pcap: &[u8]) -> std::result::Result<BTreeMap<FlowKey, Flow>, String> {
    let magic = pcap.get(..4).ok_or("shorter than a pcap header")?;
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(format!("not a pcap file (magic {magic:02x?})")),
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = pcap.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    if u32_at(20) != Some(1) {
        return Err("the link type is not Ethernet".into());
    }
    let mut segments: BTreeMap<FlowKey, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    let mut opened = std::collections::BTreeSet::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = usize::try_from(u32_at(at + 8).ok_or("truncated record header")?).unwrap_or(0);
        let frame = pcap.get(at + 16..at + 16 + len).ok_or("truncated record")?;
        at += 16 + len;
        let Some((key, seq, syn, payload)) = tcp_segment(frame) else {
            continue;
        };
        let entry = segments.entry(key).or_default();
        if syn {
            opened.insert(key);
        } else if !payload.is_empty() {
            entry.entry(seq).or_insert_with(|| payload.to_vec());
        }
    }
    Ok(segments
        .into_iter()
        .filter(|(_, segs)| !segs.is_empty())
        .map(|(k, segs)| {
            let flow = Flow {
                bytes: reassemble(segs),
                opened: opened.contains(&k),
            };
            (k, flow)
        })
        .collect())
}

/// Concatenates segments by sequence number, dropping bytes already seen.
fn reassemble(segs: BTreeMap<u32, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next: Option<u32> = None;
    // Sequence numbers may wrap: order them relative to the first.
    let first = segs.keys().next().copied().unwrap_or(0);
    let mut ordered: Vec<(u32, Vec<u8>)> = segs.into_iter().collect();
    ordered.sort_by_key(|(seq, _)| seq.wrapping_sub(first));
    for (seq, payload) in ordered {
        let skip = next.map_or(0, |n| n.wrapping_sub(seq) as usize);
        if skip < payload.len() && skip < (1 << 30) {
            out.extend_from_slice(&payload[skip..]);
            next = Some(seq.wrapping_add(payload.len() as u32));
        }
    }
    out
}

/// The flow, sequence number, SYN flag and payload of an Ethernet frame holding IPv4 TCP.
fn tcp_segment(frame: &[u8]) -> Option<(FlowKey, u32, bool, &[u8])> {
    let mut eth = 12;
    let mut ethertype = u16_be(frame, eth)?;
    if ethertype == 0x8100 {
        eth += 4;
        ethertype = u16_be(frame, eth)?;
    }
    if ethertype != 0x0800 {
        return None;
    }
    let ip = frame.get(eth + 2..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.get(9) != Some(&6) {
        return None;
    }
    let total = usize::from(u16_be(ip, 2)?);
    let src = Ipv4Addr::from(u32_be(ip, 12)?);
    let dst = Ipv4Addr::from(u32_be(ip, 16)?);
    let tcp = ip.get(ihl..total.min(ip.len()))?;
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    let key = FlowKey {
        src: (src, u16_be(tcp, 0)?),
        dst: (dst, u16_be(tcp, 2)?),
    };
    let syn = tcp.get(13)? & 0x02 != 0;
    Some((key, u32_be(tcp, 4)?, syn, tcp.get(data_offset..)?))
}

/// Walks `bytes` as a sequence of TLS records (content types 20–23, version 3.x, at most
/// 2^14 + 2048 bytes each) and returns how many whole records it holds; a record cut off at the
/// end (the capture stopped mid-record) is allowed. Errors name the first byte that is not TLS.
pub fn tls_records(bytes: &[u8]) -> std::result::Result<usize, String> {
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 5) else {
            return Ok(n);
        };
        let (kind, major, len) = (
            header[0],
            header[1],
            usize::from(u16::from_be_bytes([header[3], header[4]])),
        );
        if !(20..=23).contains(&kind) || major != 3 || len > (1 << 14) + 2048 {
            let end = (at + 16).min(bytes.len());
            return Err(format!(
                "byte {at} is not a TLS record header: {:02x?}",
                &bytes[at..end]
            ));
        }
        at += 5 + len;
        if at <= bytes.len() {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn frame(src_port: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = 20 + 20 + payload.len();
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 0, 2, 198, 18, 0, 3,
        ];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
        tcp[2..4].copy_from_slice(&4143u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[12] = 5 << 4;
        if payload.is_empty() {
            tcp[13] = 0x02;
        }
        f.extend_from_slice(&tcp);
        f.extend_from_slice(payload);
        f
    }

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&65535u32.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        for f in frames {
            p.extend_from_slice(&[0; 8]);
            p.extend_from_slice(&(f.len() as u32).to_le_bytes());
            p.extend_from_slice(&(f.len() as u32).to_le_bytes());
            p.extend_from_slice(f);
        }
        p
    }

    #[test]
    fn flows_are_reassembled_in_order_and_retransmissions_count_once() {
        let record = [0x17, 0x03, 0x03, 0x00, 0x03, 1, 2, 3];
        let p = pcap(&[
            frame(5000, 99, b""),
            frame(5000, 104, &record[4..]),
            frame(5000, 100, &record[..4]),
            frame(5000, 100, &record[..4]),
            frame(5001, 7, b""),
        ]);
        let flows = flows(&p).unwrap();
        assert_eq!(flows.len(), 1, "a flow without payload is left out");
        let (key, bytes) = flows.iter().next().unwrap();
        assert_eq!(key.src.1, 5000);
        assert_eq!(bytes.bytes, &record);
        assert!(bytes.opened);
        assert_eq!(tls_records(&bytes.bytes), Ok(1));
    }

    #[test]
    fn plaintext_is_not_tls_and_a_cut_record_is_allowed() {
        assert!(
            tls_records(b"GET / HTTP/1.1\r\n")
                .unwrap_err()
                .contains("byte 0")
        );
        assert_eq!(tls_records(&[0x16, 0x03, 0x01, 0x01, 0x00, 1, 2]), Ok(0));
        let mut two = vec![0x16, 0x03, 0x01, 0x00, 0x01, 9];
        two.extend_from_slice(b"HTTP/1.1 200 OK");
        assert!(tls_records(&two).unwrap_err().contains("byte 6"));
        assert!(flows(b"nope").is_err());
    }
}
