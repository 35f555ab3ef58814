//! Serving HTTP/1 with the limits a small device needs against silent and greedy clients:
//! a cap on open connections, in all and per client address (a connection over either cap
//! is closed as it arrives), a deadline for each request's headers, and an idle deadline
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
use tokio::sync::watch;
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

/// Open connections, in all and per client address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One accepted connection's place in [`Open`]; released on drop.
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.ip);
            }
        }
    }
}

/// Takes a slot for `ip`, or says which cap is full.
fn admit(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &ServeLimits) -> Result<Slot, &'static str> {
    let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
    if o.total >= limits.max_connections {
        return Err("connections_full");
    }
    let mine = o.per_client.entry(ip).or_insert(0);
    if *mine >= limits.max_connections_per_client {
        return Err("connections_per_client");
    }
    *mine += 1;
    o.total += 1;
    Ok(Slot {
        open: open.clone(),
        ip,
    })
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
        let slot = match admit(&open, peer.ip(), &limits) {
            Ok(slot) => slot,
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
        if open.lock().unwrap_or_else(|e| e.into_inner()).total == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Serves one connection until it closes, goes idle past the limit, or the server drains.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ServeLimits,
    slot: Slot,
    mut drain: watch::Receiver<bool>,
) {
    // Requests in flight on this connection, and when the last one ended.
    let busy = Arc::new(Mutex::new((0usize, tokio::time::Instant::now())));
    let tracker = busy.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        let tracker = tracker.clone();
        async move {
            tracker.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
            let response = app.oneshot(req.map(axum::body::Body::new)).await;
            let mut b = tracker.lock().unwrap_or_else(|e| e.into_inner());
            b.0 -= 1;
            b.1 = tokio::time::Instant::now();
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
    let mut closing = false;
    loop {
        let idle_deadline = {
            let b = busy.lock().unwrap_or_else(|e| e.into_inner());
            (b.0 == 0).then_some(b.1 + limits.idle_timeout)
        };
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
            _ = idle, if !closing => {
                let b = busy.lock().unwrap_or_else(|e| e.into_inner());
                if b.0 == 0 && b.1.elapsed() >= limits.idle_timeout {
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
    drop(slot);
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

    #[test]
    fn caps_in_all_and_per_client() {
        let open = Arc::new(Mutex::new(Open::default()));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let s1 = admit(&open, a, &limits()).unwrap();
        let _s2 = admit(&open, a, &limits()).unwrap();
        assert_eq!(
            admit(&open, a, &limits()).err(),
            Some("connections_per_client")
        );
        let _s3 = admit(&open, b, &limits()).unwrap();
        assert_eq!(admit(&open, b, &limits()).err(), Some("connections_full"));
        drop(s1);
        let _s4 = admit(&open, b, &limits()).expect("a slot freed is a slot taken");
        assert_eq!(open.lock().unwrap().total, 3);
    }
}
