//! What the SMTP adapter needs to know: which server, how to secure and authenticate the
//! connection, who the mail is from, how long to wait.

use std::time::Duration;

use secrecy::SecretString;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text throughout: only for a relay on the same host or a trusted network, and for
    /// tests. Credentials are refused in this mode, so a password never travels in clear.
    None,
    /// A plain connection upgraded with `STARTTLS` before anything else is sent; a server that
    /// does not offer it is an error, never a fallback to plain text. Usually port 587.
    StartTls,
    /// TLS from the first byte ("implicit TLS", SMTPS). Usually port 465.
    Tls,
}

/// How to reach the SMTP server and what to send as.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// The server's host name (also the name its TLS certificate must carry) or IP address.
    pub host: String,
    /// The server's port: 587 for [`TlsMode::StartTls`], 465 for [`TlsMode::Tls`], often 25 for
    /// a local relay.
    pub port: u16,
    /// How the connection is secured.
    pub tls: TlsMode,
    /// The user to log in as (`AUTH PLAIN` or `LOGIN`, whichever the server offers); `None` to
    /// send without logging in. Set together with `password`.
    pub username: Option<String>,
    /// The password for `username`; never logged.
    pub password: Option<SecretString>,
    /// The sender, as an address optionally with a display name:
    /// `noreply@example.com` or `Markets <noreply@example.com>`. Also the envelope sender, to
    /// which bounces go.
    pub from: String,
    /// The most one notice may take, connecting and every SMTP command included, before it
    /// counts as [`Unavailable`](crate::NotifyError::Unavailable).
    pub timeout: Duration,
}

impl SmtpSettings {
    /// `host` on port 587 with required `STARTTLS`, no login, sending as `from`, with a 10 s
    /// timeout.
    pub fn new(host: impl Into<String>, from: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: 587,
            tls: TlsMode::StartTls,
            username: None,
            password: None,
            from: from.into(),
            timeout: Duration::from_secs(10),
        }
    }
}
