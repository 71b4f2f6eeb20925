//! TCP to a region whose name resolves to several addresses: the attempts overlap, in
//! resolver order, a new one starting when the last has neither connected nor failed within a
//! stagger delay, or at once when it fails (RFC 8305's connection attempt delay). The first
//! to connect wins and the others are dropped.
//!
//! One at a time, an address that drops SYNs (a zone of the region's load balancer gone, a
//! firewall) held every new connection for the whole connect timeout, and the request failed
//! over to the next region although the next address would have answered at once.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// RFC 8305's recommended connection attempt delay.
const STAGGER: Duration = Duration::from_millis(250);

/// How long an attempt runs alone before the next address is tried beside it: RFC 8305's
/// 250 ms, or a quarter of the connect timeout when that is shorter, so that a short
/// `per_try_timeout` still reaches a second address.
pub fn stagger_for(connect_timeout: Duration) -> Duration {
    STAGGER.min(connect_timeout / 4)
}

/// The first of `addrs` to accept a connection; the caller bounds the whole with its connect
/// deadline. Every address failing gives the last failure, naming its address.
pub async fn first_to_connect(addrs: Vec<SocketAddr>, stagger: Duration) -> io::Result<TcpStream> {
    let mut addrs = addrs.into_iter();
    let Some(first) = addrs.next() else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no address to connect to",
        ));
    };
    let mut next = addrs.next();
    if next.is_none() {
        // The usual case, an IP literal or one address: no task, no timer.
        return attempt(first).await;
    }
    let mut attempts = JoinSet::new();
    attempts.spawn(attempt(first));
    let mut next_at = Instant::now() + stagger;
    let mut last_error = None;
    loop {
        tokio::select! {
            joined = attempts.join_next(), if !attempts.is_empty() => match joined {
                // Dropping the set aborts the attempts still running.
                Some(Ok(Ok(stream))) => return Ok(stream),
                Some(Ok(Err(e))) => {
                    last_error = Some(e);
                    next_at = Instant::now();
                }
                Some(Err(e)) => last_error = Some(io::Error::other(e)),
                None => {}
            },
            () = tokio::time::sleep_until(next_at), if next.is_some() => {
                if let Some(addr) = next.take() {
                    attempts.spawn(attempt(addr));
                }
                next = addrs.next();
                next_at = Instant::now() + stagger;
            },
        }
        if attempts.is_empty() && next.is_none() {
            return Err(last_error.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "no address to connect to")
            }));
        }
    }
}

async fn attempt(addr: SocketAddr) -> io::Result<TcpStream> {
    TcpStream::connect(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener whose accept queue is full, so the kernel drops further SYNs: a connect to
    /// it hangs as to a blackholed address. The returned values keep it so.
    fn dropping_syns() -> (SocketAddr, Vec<std::net::TcpStream>, socket2::Socket) {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        listener.bind(&any.into()).expect("bind");
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("address")
            .as_socket()
            .expect("inet");
        let mut queued = Vec::new();
        for _ in 0..8 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(conn) => queued.push(conn),
                Err(_) => return (addr, queued, listener),
            }
        }
        panic!("the accept queue of {addr} never filled");
    }

    #[tokio::test]
    async fn an_address_that_drops_syns_costs_one_stagger_not_the_connect_timeout() {
        let (dead, _queued, _listener) = dropping_syns();
        let live = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let live_addr = live.local_addr().expect("address");
        let started = Instant::now();
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            first_to_connect(vec![dead, live_addr], Duration::from_millis(100)),
        )
        .await
        .expect("connects before the test's bound")
        .expect("connects");
        assert_eq!(stream.peer_addr().expect("peer"), live_addr);
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "the second address waited for the stagger"
        );
    }

    #[tokio::test]
    async fn a_refused_address_moves_on_at_once() {
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("address")
        };
        let live = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let live_addr = live.local_addr().expect("address");
        // A stagger far longer than the test's bound: only the refusal can start the second.
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            first_to_connect(vec![refused, live_addr], Duration::from_secs(3600)),
        )
        .await
        .expect("the refusal started the next attempt")
        .expect("connects");
        assert_eq!(stream.peer_addr().expect("peer"), live_addr);
    }

    #[tokio::test]
    async fn every_address_refused_is_the_last_refusal_with_its_address() {
        let refused: Vec<SocketAddr> = (0..3)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                l.local_addr().expect("address")
            })
            .collect();
        let last = refused[2];
        let e = tokio::time::timeout(
            Duration::from_secs(10),
            first_to_connect(refused, Duration::from_secs(3600)),
        )
        .await
        .expect("finishes")
        .expect_err("nothing listens");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert!(e.to_string().contains(&last.to_string()), "{e}");
    }

    #[test]
    fn the_stagger_fits_a_short_connect_timeout() {
        assert_eq!(stagger_for(Duration::from_secs(2)), STAGGER);
        assert_eq!(
            stagger_for(Duration::from_millis(180)),
            Duration::from_millis(45)
        );
    }
}
