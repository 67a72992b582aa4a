//! [`SmtpSink`]: just enough of an SMTP server (RFC 5321) for lettre, written on Tokio.
//!
//! No TLS and no `AUTH` (neither is advertised); `EHLO` advertises `8BITMIME`, `SMTPUTF8` and
//! `SIZE`. Any number of connections at once, any number of messages per connection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::mail::ReceivedMail;
use crate::settings::{SmtpSettings, TlsMode};

/// The longest command or data line taken; a longer one ends the connection.
const MAX_LINE: usize = 64 * 1024;

/// A running SMTP server on `127.0.0.1` and a free port; stopped when dropped.
///
/// Each message is recorded before the server replies to its data, so once a send has
/// returned successfully its message is already in [`messages`](Self::messages).
#[derive(Debug)]
pub struct SmtpSink {
    port: u16,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    messages: Mutex<Vec<ReceivedMail>>,
    /// Woken whenever a message is taken, for [`SmtpSink::wait_for`].
    arrived: tokio::sync::Notify,
    /// What to do with the next messages, oldest first, instead of taking them.
    faults: Mutex<VecDeque<Fault>>,
    connections: AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Refuse the message with this reply code.
    Refuse(u16),
    /// Never answer the message's data: a server that hangs.
    Stall,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SmtpSink {
    /// Starts the server; it accepts connections as soon as this returns.
    ///
    /// # Panics
    /// If no port on 127.0.0.1 can be bound, or outside a Tokio runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("cannot bind the SMTP sink: {error}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("the SMTP sink has no address: {error}"))
            .port();
        let shared = Arc::new(Shared::default());
        let server = tokio::spawn(accept(listener, Arc::clone(&shared)));
        Self {
            port,
            shared,
            server,
        }
    }

    /// The port the server listens on (at `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Settings for this server: plain text, no login, from `Markets <noreply@markets.test>`,
    /// with a 5 s timeout.
    pub fn settings(&self) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            tls: TlsMode::None,
            username: None,
            password: None,
            from: "Markets <noreply@markets.test>".to_owned(),
            timeout: Duration::from_secs(5),
        }
    }

    /// Waits until `accept` holds for the messages taken so far (checked now and after every
    /// new message), and returns them.
    pub async fn wait_for(&self, accept: impl Fn(&[ReceivedMail]) -> bool) -> Vec<ReceivedMail> {
        loop {
            // Registered before checking, so a message taken in between still wakes us.
            let arrived = self.shared.arrived.notified();
            let messages = self.messages();
            if accept(&messages) {
                return messages;
            }
            arrived.await;
        }
    }

    /// The messages taken so far, in the order their data ended.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        lock(&self.shared.messages).clone()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Refuses the next `count` messages after their data with the reply `code`: 4xx (e.g. 451)
    /// is a transient failure, 5xx (e.g. 550) a permanent one. Refused messages are not
    /// recorded. Faults queue up: this comes after any ordered before.
    ///
    /// # Panics
    /// If `code` is not a 4xx or 5xx code.
    pub fn reject_next(&self, count: usize, code: u16) {
        assert!((400..600).contains(&code), "{code} is not a failure code");
        lock(&self.shared.faults).extend(std::iter::repeat_n(Fault::Refuse(code), count));
    }

    /// Never answers the data of the next `count` messages (they are not recorded), as a server
    /// that hangs: the connection stays open and silent until the client gives up. Faults queue
    /// up: this comes after any ordered before.
    pub fn stall_next(&self, count: usize) {
        lock(&self.shared.faults).extend(std::iter::repeat_n(Fault::Stall, count));
    }
}

impl Drop for SmtpSink {
    /// Stops listening and closes every connection.
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Accepts connections until aborted; aborting drops `sessions`, which aborts them all.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    sessions.spawn(session(stream, Arc::clone(&shared)));
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// The envelope of the transaction in progress.
#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
}

/// One client connection, until `QUIT`, end of stream, or an I/O error.
async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    writer
        .write_all(b"220 markets-smtp-sink ESMTP ready\r\n")
        .await?;
    let mut envelope = Envelope::default();
    while let Some(line) = read_line(&mut reader).await? {
        let line = String::from_utf8_lossy(&line);
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                envelope = Envelope::default();
                "250-markets-smtp-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760"
            }
            "HELO" => {
                envelope = Envelope::default();
                "250 markets-smtp-sink"
            }
            "MAIL" => match path(&line, "MAIL FROM:") {
                Some(from) => {
                    envelope = Envelope {
                        from: Some(from),
                        to: Vec::new(),
                    };
                    "250 2.1.0 OK"
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>",
            },
            "RCPT" => match path(&line, "RCPT TO:") {
                _ if envelope.from.is_none() => "503 5.5.1 MAIL first",
                Some(to) => {
                    envelope.to.push(to);
                    "250 2.1.5 OK"
                }
                None => "501 5.5.4 syntax: RCPT TO:<address>",
            },
            "DATA" if envelope.to.is_empty() => "503 5.5.1 RCPT first",
            "DATA" => {
                writer
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let Some(data) = read_data(&mut reader).await? else {
                    return Ok(());
                };
                let envelope = std::mem::take(&mut envelope);
                let fault = lock(&shared.faults).pop_front();
                let reply = match fault {
                    None => {
                        lock(&shared.messages).push(ReceivedMail {
                            from: envelope.from.unwrap_or_default(),
                            to: envelope.to,
                            data,
                        });
                        shared.arrived.notify_waiters();
                        "250 2.0.0 OK queued".to_owned()
                    }
                    Some(Fault::Refuse(code)) => {
                        format!("{code} {}.0.0 refused by the test sink", code / 100)
                    }
                    Some(Fault::Stall) => std::future::pending().await,
                };
                writer.write_all(format!("{reply}\r\n").as_bytes()).await?;
                continue;
            }
            "RSET" => {
                envelope = Envelope::default();
                "250 2.0.0 OK"
            }
            "NOOP" => "250 2.0.0 OK",
            "QUIT" => {
                writer.write_all(b"221 2.0.0 bye\r\n").await?;
                return writer.shutdown().await;
            }
            _ => "502 5.5.2 command not implemented",
        };
        writer.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
    Ok(())
}

/// One line without its line ending, or `None` at the end of the stream.
async fn read_line(
    reader: &mut BufReader<impl AsyncRead + Unpin>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long or cut short",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// The message after `DATA`, up to the line holding a single `.`, with a leading dot removed
/// from every line that has one (RFC 5321 4.5.2) and CRLF after every line; `None` if the
/// stream ends first.
async fn read_data(
    reader: &mut BufReader<impl AsyncRead + Unpin>,
) -> std::io::Result<Option<String>> {
    let mut data = Vec::new();
    while let Some(line) = read_line(reader).await? {
        if line == b"." {
            return Ok(Some(String::from_utf8_lossy(&data).into_owned()));
        }
        data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
        data.extend_from_slice(b"\r\n");
    }
    Ok(None)
}

/// The address in `MAIL FROM:<a>` or `RCPT TO:<a>` (case-insensitive, parameters ignored);
/// empty for the null sender `<>`.
fn path(line: &str, prefix: &str) -> Option<String> {
    let head = line.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = line[prefix.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}
