//! Serving HTTP/1 with the limits a small device needs against silent and greedy clients:
//! a cap on open connections per client address (a connection over it is closed as it
//! arrives) and in all (at that cap, the connection idle longest makes room: one that has
//! not sent a request yet, or sits between requests, so silent sockets from many addresses
//! cannot keep a shopper out), a deadline for each request's headers, and an idle deadline
//! between requests on a kept-alive connection. Each connection is one task; a shutdown
//! signal closes them gracefully.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::Metrics;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
}

/// One open connection as the caps see it.
#[derive(Debug)]
struct Conn {
    ip: IpAddr,
    in_flight: usize,
    /// Since when no request has been in flight (from the accept, before the first).
    idle_since: Instant,
    /// Told when the connection must make room for a newer one.
    evict: Arc<Notify>,
}

/// Open connections, in all and per client address.
#[derive(Debug, Default)]
struct Open {
    conns: HashMap<u64, Conn>,
    per_client: HashMap<IpAddr, usize>,
    next_id: u64,
}

impl Open {
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&conn.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&conn.ip);
            }
        }
        Some(conn)
    }

    /// Closes the connection idle longest, if any is idle; says whether one was.
    fn evict_idlest(&mut self) -> bool {
        let idlest = self
            .conns
            .iter()
            .filter(|(_, c)| c.in_flight == 0)
            .min_by_key(|(id, c)| (c.idle_since, **id))
            .map(|(id, _)| *id);
        match idlest.and_then(|id| self.remove(id)) {
            Some(conn) => {
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection admitted, and whether an idle one was closed to make room.
struct Admitted {
    slot: Slot,
    evicted: bool,
}

/// Takes a slot for `ip`, making room at the total cap by closing the connection idle
/// longest, or says which cap is full.
fn admit(
    open: &Arc<Mutex<Open>>,
    ip: IpAddr,
    limits: &ServeLimits,
    now: Instant,
) -> Result<Admitted, &'static str> {
    let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
    if o.per_client.get(&ip).copied().unwrap_or(0) >= limits.max_connections_per_client {
        return Err("connections_per_client");
    }
    let evicted = o.conns.len() >= limits.max_connections;
    if evicted && !o.evict_idlest() {
        return Err("connections_full");
    }
    *o.per_client.entry(ip).or_insert(0) += 1;
    let id = o.next_id;
    o.next_id += 1;
    let evict = Arc::new(Notify::new());
    o.conns.insert(
        id,
        Conn {
            ip,
            in_flight: 0,
            idle_since: now,
            evict: evict.clone(),
        },
    );
    Ok(Admitted {
        slot: Slot {
            open: open.clone(),
            id,
            evict,
        },
        evicted,
    })
}

/// One accepted connection's place in [`Open`]; released on drop.
struct Slot {
    open: Arc<Mutex<Open>>,
    id: u64,
    evict: Arc<Notify>,
}

impl Slot {
    fn with<R>(&self, f: impl FnOnce(&mut Conn) -> R) -> Option<R> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.conns.get_mut(&self.id).map(f)
    }

    fn request_started(&self) {
        self.with(|c| c.in_flight += 1);
    }

    fn request_ended(&self, now: Instant) {
        self.with(|c| {
            c.in_flight -= 1;
            c.idle_since = now;
        });
    }

    /// When the connection is to be closed for idling, if no request is in flight.
    fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        self.with(|c| (c.in_flight == 0).then_some(c.idle_since + idle_timeout))
            .flatten()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(self.id);
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets open requests finish
/// (up to 5 s). Handlers see the client's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let open = Arc::new(Mutex::new(Open::default()));
    let (drain_tx, drain_rx) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => Some(r),
            _ = shutdown.wait_for(|s| *s) => None,
        };
        let (stream, peer) = match accepted {
            None => break,
            Some(Ok(conn)) => conn,
            // Out of descriptors or a reset before accept: keep serving the others.
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let slot = match admit(&open, peer.ip(), &limits, Instant::now()) {
            Ok(Admitted { slot, evicted }) => {
                if evicted {
                    metrics.rejection("connection_evicted");
                }
                slot
            }
            Err(reason) => {
                metrics.rejection(reason);
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            limits,
            slot,
            drain_rx.clone(),
        ));
    }
    let _ = drain_tx.send(true);
    // Give requests in flight a moment to be answered.
    for _ in 0..250 {
        if open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .conns
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Serves one connection until it closes, goes idle past the limit, is told to make room,
/// or the server drains.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ServeLimits,
    slot: Slot,
    mut drain: watch::Receiver<bool>,
) {
    let slot = Arc::new(slot);
    let tracker = slot.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        let tracker = tracker.clone();
        async move {
            tracker.request_started();
            let response = app.oneshot(req.map(axum::body::Body::new)).await;
            tracker.request_ended(Instant::now());
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let evict = slot.evict.clone();
    let mut closing = false;
    loop {
        let idle_deadline = slot.idle_deadline(limits.idle_timeout);
        let idle = async {
            match idle_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                // Busy: look again shortly.
                None => tokio::time::sleep(limits.idle_timeout).await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                break;
            }
            // Idle while a newer connection needed the room: close at once.
            _ = evict.notified() => break,
            _ = idle, if !closing => {
                if slot.idle_deadline(limits.idle_timeout).is_some_and(|at| at <= Instant::now()) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = drain.wait_for(|d| *d), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServeLimits {
        ServeLimits {
            max_connections: 3,
            max_connections_per_client: 2,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_client_cap_refuses_and_total_cap_makes_room() {
        let open = Arc::new(Mutex::new(Open::default()));
        let t0 = Instant::now();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let s1 = admit(&open, a, &limits(), t0).unwrap();
        let s2 = admit(&open, a, &limits(), t0 + Duration::from_secs(1)).unwrap();
        assert!(!s1.evicted && !s2.evicted);
        assert_eq!(
            admit(&open, a, &limits(), t0).err(),
            Some("connections_per_client")
        );
        let s3 = admit(&open, b, &limits(), t0 + Duration::from_secs(2)).unwrap();
        // Full: the connection idle longest (s1) makes room for the newcomer.
        let s4 = admit(&open, b, &limits(), t0 + Duration::from_secs(3)).unwrap();
        assert!(s4.evicted);
        assert_eq!(open.lock().unwrap().conns.len(), 3);
        assert!(!open.lock().unwrap().conns.contains_key(&s1.slot.id));
        // Its drop later does not free a second slot.
        drop(s1);
        assert_eq!(open.lock().unwrap().conns.len(), 3);
        assert_eq!(open.lock().unwrap().per_client[&a], 1);
        drop((s2, s3, s4));
        assert!(open.lock().unwrap().conns.is_empty());
        assert!(open.lock().unwrap().per_client.is_empty());
    }

    #[test]
    fn a_connection_with_a_request_in_flight_is_never_evicted() {
        let open = Arc::new(Mutex::new(Open::default()));
        let t0 = Instant::now();
        let busy: Vec<Admitted> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|a| admit(&open, ip(a), &limits(), t0).unwrap())
            .collect();
        for a in &busy {
            a.slot.request_started();
        }
        assert_eq!(
            admit(&open, ip("10.0.0.4"), &limits(), t0).err(),
            Some("connections_full")
        );
        // The first answer makes that connection idle, and so the one to make room.
        busy[1].slot.request_ended(t0 + Duration::from_millis(5));
        let newcomer = admit(&open, ip("10.0.0.4"), &limits(), t0).unwrap();
        assert!(newcomer.evicted);
        assert!(!open.lock().unwrap().conns.contains_key(&busy[1].slot.id));
    }

    #[test]
    fn idle_deadline_runs_from_the_last_answer() {
        let open = Arc::new(Mutex::new(Open::default()));
        let t0 = Instant::now();
        let idle = Duration::from_secs(15);
        let a = admit(&open, ip("10.0.0.1"), &limits(), t0).unwrap();
        assert_eq!(a.slot.idle_deadline(idle), Some(t0 + idle));
        a.slot.request_started();
        assert_eq!(a.slot.idle_deadline(idle), None);
        a.slot.request_ended(t0 + Duration::from_secs(4));
        assert_eq!(
            a.slot.idle_deadline(idle),
            Some(t0 + Duration::from_secs(4) + idle)
        );
    }
}
