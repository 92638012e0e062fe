//! Where the servers a test starts in its own process listen.

use std::net::{Ipv4Addr, SocketAddr};

/// Port 0 on 127.0.0.1: the system gives each server a free port of its own, so that tests
/// running at once never meet on one.
pub const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
