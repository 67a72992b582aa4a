//! Email adapter (lettre, SMTP) for the markets [`Notifier`] port, and a [`LogNotifier`] for
//! development.
//!
//! - [`SmtpNotifier`] sends each notice as one plain-text email through a pool of connections
//!   to one server: TLS with rustls (aws-lc-rs) either from the first byte or by required
//!   `STARTTLS`, or plain text for a local relay; optional login.
//! - The email for [`MarketCreatedNotice`]: `From` the configured sender, `To`
//!   `"<to_name> <to>"`, `Subject: Your market "<market_name>" is live`, a body naming the
//!   market and its link, `Message-ID: <idempotency_key@markets>` and
//!   `X-Idempotency-Key: <idempotency_key>` so that a receiver can drop a notice sent twice,
//!   and `Auto-Submitted: auto-generated`.
//! - Errors: an invalid recipient address and 5xx replies are
//!   [`Rejected`](NotifyError::Rejected) (sending again will not help); 4xx replies, failures to
//!   connect, network, TLS and protocol errors, and timeouts are
//!   [`Unavailable`](NotifyError::Unavailable). The whole send is bounded by the configured
//!   timeout (lettre itself bounds only connecting); after a timeout the pool starts over.
//! - Neither the password nor recipients' addresses are logged (addresses are masked).
//! - With the `testing` feature, `testing::SmtpSink` is a local SMTP server for tests.
#![deny(missing_docs)]

mod log;
mod message;
mod notifier;

mod settings;
#[cfg(feature = "testing")]
pub mod testing;

pub use log::LogNotifier;
pub use markets_domain::jobs::{MarketCreatedNotice, Notifier, NotifyError};
pub use notifier::{SetupError, SmtpNotifier};
pub use settings::{SmtpSettings, TlsMode};
