//! Taking a connection's TLS records over from rustls once its handshake is done.
//!
//! rustls does the handshake and verifies the client; when the connection is at a record
//! boundary with nothing left to send, the gateway extracts the traffic keys and protects the
//! records itself ([`crate::record`]), for an opaque splice ([`crate::opaque`]) or for HTTP on a
//! [`crate::record_stream::RecordStream`]. A connection that cannot be taken over without
//! losing a byte stays with rustls.

use tokio::net::TcpStream;

use crate::io::Tracked;
use crate::record::{self, Keys, Sealer, TrafficSecrets};
use crate::{Error, Result};

type ServerTls = tokio_rustls::server::TlsStream<Tracked<TcpStream>>;

/// What [`take_over`] leaves the caller with.
#[derive(Debug)]
pub enum TakeOver {
    /// The gateway protects the records from here on.
    Detached {
        /// The client's TCP stream.
        io: Tracked<TcpStream>,
        /// Both directions' keys.
        keys: Box<Keys>,
        /// Records read from the socket that rustls never saw.
        unread: Vec<u8>,
    },
    /// rustls keeps the records (secrets missing, or the stream not at a record boundary).
    Kept(Box<ServerTls>),
}

/// Takes a connection's records over from rustls, when that can be done without losing a
/// byte: rustls read whole records only, has nothing left to send, and the connection's
/// traffic secrets were logged. Returns the plaintext rustls had already decrypted (to be
/// used first) and the stream: for an opaque [`crate::opaque::splice`], or for HTTP on a
/// [`crate::record_stream::RecordStream`].
pub fn take_over(
    mut tls: ServerTls,
    secrets: Option<TrafficSecrets>,
) -> Result<(Vec<u8>, TakeOver)> {
    let mut plaintext = Vec::new();
    let (io, conn) = tls.get_mut();
    let at_boundary = io.records().is_some_and(|r| r.at_boundary());
    io.stop_following_records();
    let closed = drain(conn, &mut plaintext)?;
    let secrets = match secrets {
        Some(s) if at_boundary && !closed && !conn.wants_write() => s,
        _ => return Ok((plaintext, TakeOver::Kept(Box::new(tls)))),
    };
    let (mut io, conn) = tls.into_inner();
    let unread = io.take_unread();
    let extracted = conn.dangerous_extract_secrets().map_err(|e| {
        record::error(
            record::INTERNAL_ERROR,
            &format!("rustls would not hand over the traffic keys: {e}"),
        )
    })?;
    let keys = Box::new(Keys::take_over(secrets, extracted)?);
    Ok((plaintext, TakeOver::Detached { io, keys, unread }))
}

/// Moves the plaintext rustls holds into `out`; true when the client's close_notify was read.
fn drain(conn: &mut rustls::ServerConnection, out: &mut Vec<u8>) -> Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut conn.reader(), &mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(source) => {
                return Err(Error::Io {
                    what: "reading what the client sent before the splice",
                    source,
                });
            }
        }
    }
}

/// Best effort, without waiting: seals the fatal alert `desc` and writes it to the client.
pub fn send_fatal_alert(client: &Tracked<TcpStream>, sealer: &mut Sealer, desc: u8) {
    let mut buf = [0u8; 64];
    if let Ok(n) = sealer.seal_fatal_alert(&mut buf, desc) {
        let _ = client.try_write(&buf[..n]);
    }
}
