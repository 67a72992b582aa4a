//! [`SmtpNotifier`]: the [`Notifier`] port on an SMTP server, through lettre's pooled async
//! transport.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;
use tracing::{debug, warn};

use crate::log::mask_address;
use crate::message;
use crate::settings::{SmtpSettings, TlsMode};
use markets_domain::jobs::{AccountLinkNotice, MarketCreatedNotice, Notifier, NotifyError};

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Why an [`SmtpNotifier`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A setting is missing or out of range.
    #[error("invalid SMTP settings: {field}: {problem}")]
    Invalid {
        /// The [`SmtpSettings`] field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The TLS configuration could not be built (e.g. no usable certificate verifier).
    #[error("could not set up TLS for SMTP")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Called outside a Tokio runtime: the connection pool runs a clean-up task on it.
    #[error("the SMTP notifier must be created inside a Tokio runtime")]
    NoRuntime,
}

/// Sends notices as emails through one SMTP server. Cheap to clone: clones share the
/// connection pool.
///
/// Connections are opened on first use, kept for reuse (at most 10 idle, each for at most a
/// minute) and checked with `NOOP` before reuse. Create and drop it inside a Tokio runtime.
#[derive(Clone)]
pub struct SmtpNotifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// Kept to build a fresh pool after a timeout.
    builder: AsyncSmtpTransportBuilder,
    pool: RwLock<Pool>,
    from: Mailbox,
    timeout: Duration,
    host: String,
    port: u16,
    tls: TlsMode,
}

/// The current transport, numbered so that concurrent timeouts replace it only once.
struct Pool {
    generation: u64,
    transport: Transport,
}

impl std::fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        f.debug_struct("SmtpNotifier")
            .field("host", &inner.host)
            .field("port", &inner.port)
            .field("tls", &inner.tls)
            .field("from", &inner.from.to_string())
            .field("timeout", &inner.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// Checks `settings` and builds the connection pool; nothing is sent and no connection is
    /// made until the first notice.
    ///
    /// # Errors
    /// [`SetupError::Invalid`] if `host` is empty, `timeout` is zero, `from` is not an address,
    /// only one of `username` and `password` is set, or credentials are set with
    /// [`TlsMode::None`]; [`SetupError::Tls`] if the TLS set-up fails;
    /// [`SetupError::NoRuntime`] outside a Tokio runtime.
    pub fn new(settings: &SmtpSettings) -> Result<Self, SetupError> {
        let invalid = |field, problem| Err(SetupError::Invalid { field, problem });
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SetupError::NoRuntime);
        }
        let host = settings.host.trim();
        if host.is_empty() {
            return invalid("host", "must not be empty");
        }
        if settings.timeout.is_zero() {
            return invalid("timeout", "must be more than zero");
        }
        let Ok(from) = settings.from.trim().parse::<Mailbox>() else {
            return invalid(
                "from",
                "must be an address such as `noreply@example.com` or \
                 `Markets <noreply@example.com>`",
            );
        };
        let credentials = match (&settings.username, &settings.password) {
            (Some(username), Some(password)) => Some(Credentials::new(
                username.clone(),
                password.expose_secret().to_owned(),
            )),
            (None, None) => None,
            (Some(_), None) => return invalid("password", "must be set with username"),
            (None, Some(_)) => return invalid("username", "must be set with password"),
        };
        let tls = match settings.tls {
            TlsMode::None if credentials.is_some() => {
                return invalid("tls", "must be StartTls or Tls when logging in");
            }
            TlsMode::None => Tls::None,
            TlsMode::StartTls => Tls::Required(tls_parameters(host)?),
            TlsMode::Tls => Tls::Wrapper(tls_parameters(host)?),
        };
        let mut builder = Transport::builder_dangerous(host)
            .port(settings.port)
            .tls(tls)
            // lettre only applies this to connecting; `send` bounds the whole exchange.
            .timeout(Some(settings.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(10)
                    .idle_timeout(Duration::from_secs(60)),
            );
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        let transport = builder.clone().build();
        Ok(Self {
            inner: Arc::new(Inner {
                builder,
                pool: RwLock::new(Pool {
                    generation: 0,
                    transport,
                }),
                from,
                timeout: settings.timeout,
                host: host.to_owned(),
                port: settings.port,
                tls: settings.tls,
            }),
        })
    }

    fn transport(&self) -> (u64, Transport) {
        let pool = self
            .inner
            .pool
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        (pool.generation, pool.transport.clone())
    }

    /// Replaces the pool after a send timed out.
    ///
    /// The abandoned exchange may have left its connection mid-command (say, in the middle of
    /// `DATA`), and lettre would still put it back in the pool; as lettre bounds nothing but
    /// connecting, the next send on it could wait forever. So its pool is shut down (idle
    /// connections are closed, the abandoned one is closed when it is returned) and later
    /// sends start on fresh connections.
    fn reset_pool(&self, generation: u64) {
        let old = {
            let mut pool = self
                .inner
                .pool
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if pool.generation != generation {
                return; // Another timed-out send already replaced it.
            }
            pool.generation += 1;
            std::mem::replace(&mut pool.transport, self.inner.builder.clone().build())
        };
        tokio::spawn(async move { old.shutdown().await });
    }
}

fn tls_parameters(host: &str) -> Result<TlsParameters, SetupError> {
    TlsParameters::new(host.to_owned()).map_err(|error| SetupError::Tls(Box::new(error)))
}

/// 5xx replies are [`NotifyError::Rejected`]; everything else (4xx replies, connection and
/// network failures, TLS and protocol errors) is [`NotifyError::Unavailable`], so that a
/// problem on the server's side or in our configuration costs retries, not notices.
fn classify(error: lettre::transport::smtp::Error) -> NotifyError {
    if error.is_permanent() {
        NotifyError::Rejected(error.to_string())
    } else {
        NotifyError::Unavailable(Box::new(error))
    }
}

/// The send took longer than the configured timeout.
#[derive(Debug, thiserror::Error)]
#[error("the SMTP server did not answer within {0:?}")]
struct TimedOut(Duration);

impl SmtpNotifier {
    /// Sends `email` (`what`, to `to`, sent once per `key`) within the configured timeout.
    ///
    /// A timeout may come after the server took the message: the retry then sends it again,
    /// with the same `Message-ID` and `X-Idempotency-Key`.
    async fn send(
        &self,
        email: lettre::Message,
        to: &str,
        key: &str,
        what: &'static str,
    ) -> Result<(), NotifyError> {
        let (generation, transport) = self.transport();
        let timeout = self.inner.timeout;
        let to = mask_address(to);
        match tokio::time::timeout(timeout, transport.send(email)).await {
            Ok(Ok(_)) => {
                debug!(%to, idempotency_key = key, what, "notice sent");
                Ok(())
            }
            Ok(Err(error)) => {
                debug!(%to, idempotency_key = key, what, %error, "notice not sent");
                Err(classify(error))
            }
            Err(_) => {
                warn!(
                    %to,
                    idempotency_key = key,
                    what,
                    ?timeout,
                    "SMTP send timed out; starting over with new connections"
                );
                self.reset_pool(generation);
                Err(NotifyError::Unavailable(Box::new(TimedOut(timeout))))
            }
        }
    }
}

#[async_trait]
impl Notifier for SmtpNotifier {
    /// Sends the notice as one email (see the crate documentation for its content).
    async fn market_created(&self, notice: &MarketCreatedNotice) -> Result<(), NotifyError> {
        let email = message::market_created(&self.inner.from, notice)?;
        let key = &notice.idempotency_key;
        self.send(email, &notice.to, key, "market_created").await
    }

    /// Sends the link as one email, plain text and HTML.
    async fn account_link(&self, notice: &AccountLinkNotice) -> Result<(), NotifyError> {
        let email = message::account_link(&self.inner.from, notice)?;
        let key = &notice.idempotency_key;
        self.send(email, &notice.to, key, notice.purpose.as_str())
            .await
    }
}
