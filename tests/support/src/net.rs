//! Ports and listeners.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A loopback port nobody listens on right now, picked by the OS from its ephemeral range
/// (never a standard service port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral loopback port")
}

/// Whether something accepts TCP connections on `addr`.
pub fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// The loopback address of `port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
