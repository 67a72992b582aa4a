//! A TCP proxy between one instance and Redis that the test can partition: while partitioned
//! it moves no byte in either direction (new connections are accepted and then left silent),
//! as a network partition looks to both ends; healed, whatever was held back is delivered, as
//! TCP retransmission would.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The proxy; it stops, with every connection, when dropped.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    partitioned: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (a loopback port).
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (partitioned, open) = watch::channel(false);
        let task = tokio::spawn(accept(listener, upstream, open));
        Self {
            port,
            partitioned,
            task,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops moving bytes.
    pub fn partition(&self) {
        self.partitioned.send_replace(true);
    }

    /// Moves bytes again, the held-back ones first.
    pub fn heal(&self) {
        self.partitioned.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until aborted; aborting drops the set, which aborts every connection.
async fn accept(listener: TcpListener, upstream: u16, partitioned: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        connections.spawn(forward(client, upstream, partitioned.clone()));
        while connections.try_join_next().is_some() {}
    }
}

async fn forward(client: TcpStream, upstream: u16, mut partitioned: watch::Receiver<bool>) {
    if connected(&mut partitioned).await.is_none() {
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pipe(client_read, server_write, partitioned.clone()),
        pipe(server_read, client_write, partitioned),
    );
}

/// Waits while partitioned; `None` once the proxy is gone.
async fn connected(partitioned: &mut watch::Receiver<bool>) -> Option<()> {
    partitioned
        .wait_for(|partitioned| !partitioned)
        .await
        .ok()
        .map(drop)
}

/// Copies `from` to `to`, holding each chunk (and reading no more) while partitioned.
async fn pipe(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut partitioned: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        if connected(&mut partitioned).await.is_none() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if connected(&mut partitioned).await.is_none()
            || to.write_all(&buffer[..read]).await.is_err()
        {
            return;
        }
    }
    let _ = to.shutdown().await;
}
