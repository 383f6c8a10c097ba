//! Minimal HTTP/1.1 requests over plain TCP, for the demo's checks.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET /` with `Host: host` on a new connection; returns the whole response (head and body).
pub(crate) fn get(addr: SocketAddr, host: &str) -> std::io::Result<String> {
    get_path(addr, host, "/")
}

/// `GET path` with `Host: host` on a new connection; returns the whole response.
pub(crate) fn get_path(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mc-demo\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    match stream.read_to_string(&mut response) {
        Ok(_) => Ok(response),
        // A reset after a complete response still counts as the response.
        Err(_) if !response.is_empty() => Ok(response),
        Err(e) => Err(e),
    }
}
