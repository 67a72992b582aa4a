//! [`LogNotifier`]: notices go to the log instead of anyone's inbox, for development.

use async_trait::async_trait;
use tracing::info;

use markets_domain::jobs::{AccountLinkNotice, MarketCreatedNotice, Notifier, NotifyError};

/// Writes each notice to the log (at `info`) and reports success: the default in development,
/// where there is no mail server and nobody to write to.
///
/// The recipient's address is masked (`a***@example.com`); the display name is left out.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn market_created(&self, notice: &MarketCreatedNotice) -> Result<(), NotifyError> {
        info!(
            to = %mask_address(&notice.to),
            market = %notice.market_name,
            url = %notice.market_url,
            idempotency_key = %notice.idempotency_key,
            "market-created notice (logged, not sent)"
        );
        Ok(())
    }

    /// Logs the link itself, so a developer can open it: this notifier is for development.
    async fn account_link(&self, notice: &AccountLinkNotice) -> Result<(), NotifyError> {
        info!(
            to = %mask_address(&notice.to),
            purpose = notice.purpose.as_str(),
            url = %notice.url,
            idempotency_key = %notice.idempotency_key,
            "account link (logged, not sent)"
        );
        Ok(())
    }
}

/// An address fit for logs: the first character of the local part, `***`, and the domain, so
/// that one can tell recipients apart without the log holding their addresses.
/// `ada@example.com` becomes `a***@example.com`; anything without an `@` becomes `***`.
pub(crate) fn mask_address(address: &str) -> String {
    let address = address.trim();
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn addresses_are_masked() {
        assert_eq!(mask_address("ada@example.com"), "a***@example.com");
        assert_eq!(
            mask_address(" ada.lovelace@example.com "),
            "a***@example.com"
        );
        assert_eq!(mask_address("é@exämple.org"), "é***@exämple.org");
        assert_eq!(mask_address("\"a@b\"@example.com"), "\"***@example.com");
        assert_eq!(mask_address("@example.com"), "***@example.com");
        assert_eq!(mask_address("not an address"), "***");
        assert_eq!(mask_address(""), "***");
    }

    /// Everything the subscriber writes, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_log_notifier_logs_a_masked_notice_and_succeeds() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let notice = MarketCreatedNotice::new(
            "job-42".to_owned(),
            "ada@example.com".to_owned(),
            "Ada Lovelace".to_owned(),
            "Analytical engines".to_owned(),
            "https://markets.example.com/markets/42".to_owned(),
        );
        LogNotifier.market_created(&notice).await.unwrap();
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains(" INFO "), "{log}");
        assert!(log.contains("a***@example.com"), "{log}");
        assert!(log.contains("Analytical engines"), "{log}");
        assert!(log.contains("job-42"), "{log}");
        assert!(!log.contains("ada@example.com"), "{log}");
        assert!(!log.contains("Lovelace"), "{log}");
    }
}
