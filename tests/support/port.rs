//! A port on 127.0.0.1 that nothing listens on: for a server a test starts on a port it has
//! to name, or for an address that must refuse connections.

use std::net::{Ipv4Addr, TcpListener};

/// A port the system just gave out and took back; another process may take it again, so a
/// server started on it has to cope with losing the race.
pub fn free() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port()
}
