//! The email for a [`MarketCreatedNotice`]: headers, wording, and the marks that let a receiver
//! recognise the same notice sent twice.

use std::fmt::Write as _;

use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, SinglePart};

use markets_domain::jobs::{MarketCreatedNotice, NotifyError};

/// Carries [`MarketCreatedNotice::idempotency_key`] verbatim, for receivers that dedupe on it.
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "X-Idempotency-Key";

/// The domain part of our `Message-ID`s. Any fixed name works: it only has to make our ids
/// unlikely to collide with other senders'.
const MESSAGE_ID_DOMAIN: &str = "markets";

/// `Your market "<name>" is live`.
pub(crate) fn subject(notice: &MarketCreatedNotice) -> String {
    format!("Your market \"{}\" is live", notice.market_name)
}

/// Plain text naming the market and linking to it.
pub(crate) fn body(notice: &MarketCreatedNotice) -> String {
    let greeting = match notice.to_name.trim() {
        "" => "Hello,".to_owned(),
        name => format!("Hello {name},"),
    };
    format!(
        "{greeting}\n\nYour market \"{}\" has been created and is live:\n\n{}\n\n\
         You receive this email because you created this market.\n",
        notice.market_name, notice.market_url
    )
}

/// `<key@markets>`, the same for every send of a notice, so a receiver (or a mailbox) sees a
/// retried notice as the same message.
///
/// The key is escaped to what a `Message-ID` may hold: ASCII letters, digits, `-` and `_` stay,
/// every other byte becomes `=XX` (and `=` itself too, so different keys never share an id).
/// Job ids (UUIDs) come through unchanged.
pub(crate) fn message_id(idempotency_key: &str) -> Result<String, NotifyError> {
    if idempotency_key.is_empty() {
        return Err(NotifyError::Rejected(
            "the idempotency key is empty".to_owned(),
        ));
    }
    let mut id = String::with_capacity(idempotency_key.len() + MESSAGE_ID_DOMAIN.len() + 3);
    id.push('<');
    for byte in idempotency_key.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            id.push(char::from(byte));
        } else {
            let _ = write!(id, "={byte:02X}");
        }
    }
    let _ = write!(id, "@{MESSAGE_ID_DOMAIN}>");
    Ok(id)
}

/// The whole email, from `from` to the notice's recipient.
///
/// # Errors
/// [`NotifyError::Rejected`] if the recipient's address is invalid or the idempotency key is
/// empty: sending the same notice again would fail the same way.
pub(crate) fn market_created(
    from: &Mailbox,
    notice: &MarketCreatedNotice,
) -> Result<Message, NotifyError> {
    let address =
        notice.to.trim().parse().map_err(|error| {
            NotifyError::Rejected(format!("invalid recipient address: {error}"))
        })?;
    let name = Some(notice.to_name.trim())
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(name, address))
        .subject(subject(notice))
        .message_id(Some(message_id(&notice.idempotency_key)?))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(IDEMPOTENCY_KEY_HEADER),
            notice.idempotency_key.clone(),
        ))
        // RFC 3834: sent by a machine, so auto-responders ("out of office") do not answer it.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_owned(),
        ))
        // lettre picks the transfer encoding: 7bit for short ASCII lines, quoted-printable
        // otherwise, so the message never needs the server's 8BITMIME.
        .singlepart(SinglePart::plain(body(notice)))
        .map_err(|error| NotifyError::Rejected(format!("invalid message: {error}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn notice() -> MarketCreatedNotice {
        MarketCreatedNotice::new(
            "job-1".to_owned(),
            "ada@example.com".to_owned(),
            "Ada Lovelace".to_owned(),
            "Analytical engines".to_owned(),
            "https://markets.example.com/markets/1".to_owned(),
        )
    }

    #[test]
    fn message_ids_keep_plain_keys_and_escape_the_rest() {
        assert_eq!(
            message_id("0192f0c4-7b1e-7c3a-9d2e-5f6a7b8c9d0e").unwrap(),
            "<0192f0c4-7b1e-7c3a-9d2e-5f6a7b8c9d0e@markets>"
        );
        assert_eq!(message_id("a b=c").unwrap(), "<a=20b=3Dc@markets>");
        assert_eq!(
            message_id("a>\r\nX: y").unwrap(),
            "<a=3E=0D=0AX=3A=20y@markets>"
        );
        assert_ne!(message_id("a=20").unwrap(), message_id("a ").unwrap());
        assert!(matches!(message_id(""), Err(NotifyError::Rejected(_))));
    }

    #[test]
    fn the_body_names_the_market_and_links_to_it() {
        let body = body(&notice());
        assert!(body.starts_with("Hello Ada Lovelace,\n"), "{body}");
        assert!(body.contains("\"Analytical engines\""), "{body}");
        assert!(
            body.contains("https://markets.example.com/markets/1"),
            "{body}"
        );
        let mut anonymous = notice();
        anonymous.to_name = " ".to_owned();
        assert!(super::body(&anonymous).starts_with("Hello,\n"));
    }

    #[test]
    fn header_values_cannot_inject_headers() {
        let mut notice = notice();
        notice.idempotency_key = "k\r\nBcc: eve@example.com".to_owned();
        notice.market_name = "m\r\nBcc: eve@example.com".to_owned();
        let from: Mailbox = "Markets <noreply@example.com>".parse().unwrap();
        let formatted = market_created(&from, &notice).unwrap().formatted();
        let text = String::from_utf8(formatted).unwrap();
        let (head, _body) = text.split_once("\r\n\r\n").unwrap();
        let names: Vec<_> = head
            .split("\r\n")
            .filter(|line| !line.starts_with([' ', '\t']))
            .filter_map(|line| line.split_once(':').map(|(name, _)| name))
            .collect();
        assert_eq!(
            names,
            [
                "From",
                "To",
                "Subject",
                "Message-ID",
                IDEMPOTENCY_KEY_HEADER,
                "Auto-Submitted",
                "MIME-Version",
                "Date",
                "Content-Type",
                "Content-Transfer-Encoding"
            ],
            "{head}"
        );
    }
}
