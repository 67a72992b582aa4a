//! A private `redis-server` (Debian's, which `scripts/services.sh` installs) on a free loopback
//! port, which a test may kill, restart with or without its data, freeze and thaw. It never
//! saves on its own (`--save ''`, no AOF): only [`PrivateRedis::snapshot`] writes the dump that
//! a restart [`WithData`](Restart::WithData) loads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::process::{free_port, poll, signal};

/// What a restart starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Empty, as after losing the machine.
    Empty,
    /// The last [`PrivateRedis::snapshot`], as after a crash of a server that persists.
    WithData,
}

/// A server of one's own, killed by pid when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts an empty server keeping its files in `dir`.
    pub async fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut redis = Self {
            dir: dir.to_owned(),
            port: free_port(),
            child: None,
        };
        redis.launch().await;
        redis
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) {
        let dir = self.dir.display().to_string();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--dir", &dir, "--dbfilename", "dump.rdb"])
            .args(["--save", "", "--appendonly", "no", "--logfile", "redis.log"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start redis-server (scripts/services.sh up installs it): {error}")
            });
        self.child = Some(child);
        let answered = poll(Duration::from_secs(10), || async {
            (self.command(&["PING"]).await.ok()? == "PONG").then_some(())
        })
        .await;
        assert!(
            answered.is_some(),
            "redis-server on {} did not start",
            self.port
        );
    }

    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("redis-server is not running")
    }

    /// SIGKILL: no shutdown, no save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, from `from`; returns once it answers.
    pub async fn restart(&mut self, from: Restart) {
        self.kill();
        if from == Restart::Empty {
            let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        }
        self.launch().await;
    }

    /// SIGSTOP: connections stay open, commands wait unanswered (a stall keeps its data).
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT: the commands sent meanwhile are executed now.
    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }

    /// `SAVE`: the data as of now is what a [`Restart::WithData`] loads.
    pub async fn snapshot(&self) {
        let reply = self.command(&["SAVE"]).await.unwrap();
        assert_eq!(reply, "OK", "SAVE failed");
    }

    /// Sends one command and returns its reply as text (a status or error line, an integer,
    /// or a bulk string; `(nil)` for none).
    pub async fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let exchange = async {
            let mut stream = BufReader::new(TcpStream::connect(("127.0.0.1", self.port)).await?);
            let mut request = format!("*{}\r\n", args.len());
            for arg in args {
                request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
            stream.get_mut().write_all(request.as_bytes()).await?;
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            let line = line.trim_end();
            match line.split_at_checked(1) {
                Some(("$", "-1")) => Ok("(nil)".to_owned()),
                Some(("$", length)) => {
                    let length: usize = length.parse().map_err(std::io::Error::other)?;
                    let mut bulk = vec![0; length + 2];
                    stream.read_exact(&mut bulk).await?;
                    bulk.truncate(length);
                    Ok(String::from_utf8_lossy(&bulk).into_owned())
                }
                Some((_, rest)) => Ok(rest.to_owned()),
                None => Err(std::io::Error::other("empty reply")),
            }
        };
        tokio::time::timeout(Duration::from_secs(2), exchange)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("no reply within 2 s")))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
