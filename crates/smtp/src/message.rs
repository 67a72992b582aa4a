//! The emails for a [`MarketCreatedNotice`] and an [`AccountLinkNotice`]: headers, wording, and
//! the marks that let a receiver recognise the same notice sent twice.

use std::fmt::Write as _;

use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MessageBuilder, MultiPart, SinglePart};

use markets_domain::auth::TokenPurpose;
use markets_domain::jobs::{AccountLinkNotice, MarketCreatedNotice, NotifyError};

/// Carries [`MarketCreatedNotice::idempotency_key`] verbatim, for receivers that dedupe on it.
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "X-Idempotency-Key";

/// The domain part of our `Message-ID`s. Any fixed name works: it only has to make our ids
/// unlikely to collide with other senders'.
const MESSAGE_ID_DOMAIN: &str = "markets";

/// `Your market "<name>" is live`.
pub(crate) fn subject(notice: &MarketCreatedNotice) -> String {
    format!("Your market \"{}\" is live", notice.market_name)
}

/// `Hello <name>,`, or `Hello,` without a name.
fn greeting(to_name: &str) -> String {
    match to_name.trim() {
        "" => "Hello,".to_owned(),
        name => format!("Hello {name},"),
    }
}

/// Plain text naming the market and linking to it.
pub(crate) fn body(notice: &MarketCreatedNotice) -> String {
    let greeting = greeting(&notice.to_name);
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

/// The headers every notice carries, from `from` to `to` (`to_name`), with `subject`; sent once
/// per `idempotency_key`.
///
/// # Errors
/// [`NotifyError::Rejected`] if the recipient's address is invalid or the idempotency key is
/// empty: sending the same notice again would fail the same way.
fn headers(
    from: &Mailbox,
    to: &str,
    to_name: &str,
    subject: String,
    idempotency_key: &str,
) -> Result<MessageBuilder, NotifyError> {
    let address = to
        .trim()
        .parse()
        .map_err(|error| NotifyError::Rejected(format!("invalid recipient address: {error}")))?;
    let name = Some(to_name.trim())
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    Ok(Message::builder()
        .from(from.clone())
        .to(Mailbox::new(name, address))
        .subject(subject)
        .message_id(Some(message_id(idempotency_key)?))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(IDEMPOTENCY_KEY_HEADER),
            idempotency_key.to_owned(),
        ))
        // RFC 3834: sent by a machine, so auto-responders ("out of office") do not answer it.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_owned(),
        )))
}

fn invalid(error: lettre::error::Error) -> NotifyError {
    NotifyError::Rejected(format!("invalid message: {error}"))
}

/// The whole email, from `from` to the notice's recipient.
///
/// # Errors
/// As [`headers`].
pub(crate) fn market_created(
    from: &Mailbox,
    notice: &MarketCreatedNotice,
) -> Result<Message, NotifyError> {
    headers(
        from,
        &notice.to,
        &notice.to_name,
        subject(notice),
        &notice.idempotency_key,
    )?
    // lettre picks the transfer encoding: 7bit for short ASCII lines, quoted-printable
    // otherwise, so the message never needs the server's 8BITMIME.
    .singlepart(SinglePart::plain(body(notice)))
    .map_err(invalid)
}

/// What an account link email says: its subject, what the link does, and why it was sent.
struct LinkWording {
    subject: &'static str,
    action: &'static str,
    reason: &'static str,
}

fn wording(purpose: TokenPurpose) -> LinkWording {
    match purpose {
        TokenPurpose::PasswordReset => LinkWording {
            subject: "Reset your Markets password",
            action: "To choose a new password, open this link",
            reason: "You receive this email because a password reset was requested for this \
                     address. If it was not you, ignore it: your password stays as it is.",
        },
        _ => LinkWording {
            subject: "Confirm your email address",
            action: "To confirm this address for your Markets account, open this link",
            reason: "You receive this email because this address was used to register. If it \
                     was not you, ignore it: no mail will follow.",
        },
    }
}

/// `valid for 30 minutes` / `valid for 24 hours`.
fn validity(notice: &AccountLinkNotice) -> String {
    let minutes = notice.valid_for.as_secs() / 60;
    if minutes >= 120 && minutes.is_multiple_of(60) {
        format!("{} hours", minutes / 60)
    } else {
        format!("{minutes} minutes")
    }
}

/// The plain text of an account link email.
pub(crate) fn link_text(notice: &AccountLinkNotice) -> String {
    let LinkWording { action, reason, .. } = wording(notice.purpose);
    format!(
        "{}\n\n{action} (valid for {}, once):\n\n{}\n\n{reason}\n",
        greeting(&notice.to_name),
        validity(notice),
        notice.url
    )
}

/// The HTML of an account link email: the same words, the link as a link.
pub(crate) fn link_html(notice: &AccountLinkNotice) -> String {
    let LinkWording { action, reason, .. } = wording(notice.purpose);
    let url = escape_html(&notice.url);
    format!(
        "<!DOCTYPE html>\n<html><body>\n<p>{}</p>\n<p>{action} (valid for {}, once):</p>\n\
         <p><a href=\"{url}\">{url}</a></p>\n<p>{reason}</p>\n</body></html>\n",
        escape_html(&greeting(&notice.to_name)),
        validity(notice),
    )
}

/// `text` safe inside HTML text and double-quoted attributes.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The whole account link email: plain text and HTML alternatives.
///
/// # Errors
/// As [`headers`].
pub(crate) fn account_link(
    from: &Mailbox,
    notice: &AccountLinkNotice,
) -> Result<Message, NotifyError> {
    let subject = wording(notice.purpose).subject.to_owned();
    headers(
        from,
        &notice.to,
        &notice.to_name,
        subject,
        &notice.idempotency_key,
    )?
    .multipart(MultiPart::alternative_plain_html(
        link_text(notice),
        link_html(notice),
    ))
    .map_err(invalid)
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

    fn link(purpose: TokenPurpose) -> AccountLinkNotice {
        AccountLinkNotice::new(
            "job-2",
            "ada@example.com",
            "Ada <Lovelace>",
            purpose,
            "https://markets.example.com/verify-email?token=ab&x=1",
            std::time::Duration::from_secs(24 * 3600),
        )
    }

    #[test]
    fn account_links_come_as_text_and_escaped_html() {
        let notice = link(TokenPurpose::EmailVerification);
        let text = link_text(&notice);
        assert!(text.starts_with("Hello Ada <Lovelace>,\n"), "{text}");
        assert!(text.contains("valid for 24 hours"), "{text}");
        assert!(text.contains(&notice.url), "{text}");
        let html = link_html(&notice);
        assert!(html.contains("Hello Ada &lt;Lovelace&gt;,"), "{html}");
        assert!(
            html.contains("href=\"https://markets.example.com/verify-email?token=ab&amp;x=1\""),
            "{html}"
        );
        let mut reset = link(TokenPurpose::PasswordReset);
        reset.valid_for = std::time::Duration::from_secs(30 * 60);
        assert!(link_text(&reset).contains("new password, open this link (valid for 30 minutes"));
        let from: Mailbox = "Markets <noreply@example.com>".parse().unwrap();
        let formatted = account_link(&from, &reset).unwrap().formatted();
        let email = String::from_utf8(formatted).unwrap();
        assert!(
            email.contains("Subject: Reset your Markets password"),
            "{email}"
        );
        assert!(email.contains("multipart/alternative"), "{email}");
        assert!(email.contains("text/html"), "{email}");
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
