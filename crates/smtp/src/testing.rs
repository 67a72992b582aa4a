//! A local SMTP server for tests: [`SmtpSink`] takes mail on `127.0.0.1` and keeps it, as
//! [`ReceivedMail`], for assertions; it can also refuse or ignore messages on request.

mod mail;
mod sink;

pub use mail::ReceivedMail;
pub use sink::SmtpSink;
