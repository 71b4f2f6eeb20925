//! `SilentPort`: a loopback port whose kernel drops every new SYN, because its listener's
//! accept queue is full and nothing accepts. A connect to it hangs as to a blackholed
//! address (a partition, a firewall dropping packets), unlike a stopped server, whose kernel
//! still completes the TCP handshake.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub struct SilentPort {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _queued: Vec<std::net::TcpStream>,
}

impl SilentPort {
    /// Listens with the shortest accept queue and fills it; panics if it never fills.
    pub fn start() -> std::io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((Ipv4Addr::LOCALHOST, 0).into())?;
        let listener = socket.listen(0)?;
        let addr = listener.local_addr()?;
        let mut queued = Vec::new();
        for _ in 0..16 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(conn) => queued.push(conn),
                Err(_) => {
                    return Ok(Self {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    });
                }
            }
        }
        panic!("the accept queue of {addr} did not fill");
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
