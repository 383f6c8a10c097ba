//! Loopback ports. A port is taken from the kernel's ephemeral range; a process that then
//! fails to bind it is restarted on another one by the caller, so parallel tests never collide.

use std::net::TcpListener;

use crate::{Error, Result};

/// A free TCP port on 127.0.0.1 at the time of the call.
pub(crate) fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::io("bind", "127.0.0.1:0", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("read the address of", "a listener", e))?;
    Ok(addr.port())
}

/// Whether a log says the process lost a race for its port.
pub(crate) fn lost_port_race(log_tail: &str) -> bool {
    log_tail.contains("address already in use")
}
