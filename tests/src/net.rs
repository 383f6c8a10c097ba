//! Test-host addresses. Kubernetes rejects loopback IPs in Endpoints, so traffic that must
//! follow Endpoints (the gateway, the services behind it) listens on documentation-range
//! addresses (TEST-NET-2, 198.51.100.0/24) that `scripts/in-netns` assigns to the loopback
//! interface of a sealed network namespace, which has no other interface: nothing leaves it.

use std::net::{IpAddr, Ipv4Addr, TcpListener};

use crate::{Error, Result};

/// How many test-host addresses `scripts/in-netns` assigns: 198.51.100.1 to .32.
pub const TEST_HOSTS: u8 = 32;

/// Test host `n` (1 to [`TEST_HOSTS`]), after checking that this process can listen on it.
pub fn test_host(n: u8) -> Result<IpAddr> {
    let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, n));
    if n == 0 || n > TEST_HOSTS {
        return Err(Error::NoTestNetwork {
            addr: ip.to_string(),
        });
    }
    match TcpListener::bind((ip, 0)) {
        Ok(_) => Ok(ip),
        Err(_) => Err(Error::NoTestNetwork {
            addr: ip.to_string(),
        }),
    }
}
