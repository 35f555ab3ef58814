//! A device's network link to the broker, as a TCP relay the simulator can cut: while cut,
//! open connections are dropped and new ones refused, as when a cable is pulled.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub struct Link {
    addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Relays `127.0.0.1:<free port>` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Link> {
        Link::start_on(std::net::Ipv4Addr::LOCALHOST, upstream).await
    }

    /// Relays `ip:<free port>` to `upstream`.
    pub async fn start_on(ip: std::net::Ipv4Addr, upstream: SocketAddr) -> std::io::Result<Link> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let (up, _) = watch::channel(true);
        let up = Arc::new(up);
        let state = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut down = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Link { addr, up, task })
    }

    /// Where the device connects instead of the broker.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts (`false`) or restores (`true`) the link.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_cut_link_drops_its_connections_and_refuses_new_ones_until_restored() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 16];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let link = Link::start(upstream).await.unwrap();
        let mut c = TcpStream::connect(link.addr()).await.unwrap();
        c.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        link.set_up(false);
        let mut rest = Vec::new();
        let n = c.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "the open connection is dropped");
        let mut again = TcpStream::connect(link.addr()).await.unwrap();
        let _ = again.write_all(b"x").await;
        assert_eq!(
            again.read(&mut buf).await.unwrap_or(0),
            0,
            "a new one is refused"
        );
        link.set_up(true);
        let mut back = TcpStream::connect(link.addr()).await.unwrap();
        back.write_all(b"ok").await.unwrap();
        back.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
    }
}
