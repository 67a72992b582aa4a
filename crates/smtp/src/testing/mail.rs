//! [`ReceivedMail`]: one message as the sink took it, with helpers that undo the encodings a
//! sender applies, so that tests can assert on the text a reader would see.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A message the sink took: its envelope and its data as sent (headers, blank line, body),
/// lines ending in CRLF, dot-stuffing undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`); empty for the null sender.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), in order.
    pub to: Vec<String>,
    /// The message itself.
    pub data: String,
}

impl ReceivedMail {
    /// The value of the first header called `name` (case-insensitive), unfolded and with any
    /// RFC 2047 encoded words (`=?utf-8?b?...?=`) decoded; `None` if there is none.
    pub fn header(&self, name: &str) -> Option<String> {
        unfolded_headers(self.head())
            .into_iter()
            .find_map(|header| {
                let (key, value) = header.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| decode_words(value.trim()))
            })
    }

    /// The body: the text after the first blank line, decoded from its
    /// `Content-Transfer-Encoding` (quoted-printable or base64; 7bit and 8bit as they are),
    /// with `\n` line endings.
    pub fn body(&self) -> String {
        let raw = self
            .data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body);
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = match encoding.as_str() {
            "quoted-printable" => quoted_printable(raw),
            "base64" => base64(raw),
            _ => raw.as_bytes().to_vec(),
        };
        String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
    }

    /// The parts of a multipart message (each with its own headers, so [`Self::header`] and
    /// [`Self::body`] read it), in order; empty for a single-part message.
    pub fn parts(&self) -> Vec<ReceivedMail> {
        let content_type = self.header("Content-Type").unwrap_or_default();
        let Some((_, boundary)) = content_type.split_once("boundary=") else {
            return Vec::new();
        };
        let boundary = format!("--{}", boundary.trim_matches('"'));
        let raw = self
            .data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body);
        raw.split(boundary.as_str())
            .skip(1) // the preamble
            .filter(|part| !part.starts_with("--")) // the closing delimiter
            .map(|part| ReceivedMail {
                from: self.from.clone(),
                to: self.to.clone(),
                data: part.trim_start_matches("\r\n").to_owned(),
            })
            .collect()
    }

    /// The part whose `Content-Type` starts with `mime` (e.g. `text/plain`), if any.
    pub fn part(&self, mime: &str) -> Option<ReceivedMail> {
        self.parts().into_iter().find(|part| {
            part.header("Content-Type")
                .is_some_and(|value| value.starts_with(mime))
        })
    }

    fn head(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or(self.data.as_str(), |(head, _)| head)
    }
}

/// Header lines with continuation lines (starting with a space or tab) joined to theirs.
fn unfolded_headers(head: &str) -> Vec<String> {
    let mut headers: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        match headers.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => headers.push(line.to_owned()),
        }
    }
    headers
}

/// Decodes quoted-printable (RFC 2045 6.7): `=XX` is a byte, `=` at the end of a line joins it
/// to the next; anything malformed is kept as it is.
fn quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes[i + 1..].starts_with(b"\r\n") {
            i += 3;
        } else if bytes[i + 1..].starts_with(b"\n") {
            i += 2;
        } else if let Some(byte) = bytes.get(i + 1..i + 3).and_then(hex_byte) {
            out.push(byte);
            i += 3;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    out
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()
}

/// Decodes base64 spread over lines; undecodable input is kept as it is.
fn base64(text: &str) -> Vec<u8> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(&compact)
        .unwrap_or_else(|_| text.as_bytes().to_vec())
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`; the charset is taken to be UTF-8)
/// and drops the whitespace between two adjacent ones, as the RFC asks. Anything else is kept.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while !rest.is_empty() {
        let start = rest.find("=?").unwrap_or(rest.len());
        let (plain, tail) = rest.split_at(start);
        match encoded_word(tail) {
            Some((decoded, length)) => {
                if !(after_word && plain.trim().is_empty()) {
                    out.push_str(plain);
                }
                out.push_str(&decoded);
                rest = &tail[length..];
                after_word = true;
            }
            None if tail.is_empty() => {
                out.push_str(plain);
                rest = tail;
            }
            None => {
                out.push_str(plain);
                out.push_str("=?");
                rest = &tail[2..];
                after_word = false;
            }
        }
    }
    out
}

/// The decoded text of the encoded word `=?charset?encoding?text?=` at the start of `text`,
/// and the word's length.
fn encoded_word(text: &str) -> Option<(String, usize)> {
    let inner = text.strip_prefix("=?")?;
    let mut parts = inner.splitn(3, '?');
    let charset = parts.next()?;
    let encoding = parts.next()?;
    let rest = parts.next()?;
    let end = rest.find("?=")?;
    let payload = &rest[..end];
    let bytes = match encoding {
        "B" | "b" => STANDARD.decode(payload).ok()?,
        "Q" | "q" => quoted_printable(&payload.replace('_', " ")),
        _ => return None,
    };
    let length = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), length))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn mail(data: &str) -> ReceivedMail {
        ReceivedMail {
            from: String::new(),
            to: Vec::new(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn headers_are_found_unfolded_and_decoded() {
        let mail = mail(
            "Subject: =?utf-8?b?WsO8cmljaA==?=\r\n =?utf-8?q?_caf=C3=A9?= and more\r\n\
             to: Ada\r\n\tLovelace <ada@example.com>\r\n\r\nTo: not a header\r\n",
        );
        assert_eq!(mail.header("subject").unwrap(), "Zürich café and more");
        assert_eq!(
            mail.header("To").unwrap(),
            "Ada\tLovelace <ada@example.com>"
        );
        assert_eq!(mail.header("From"), None);
        assert_eq!(decode_words("a =?x?= b"), "a =?x?= b");
    }

    #[test]
    fn bodies_are_decoded_from_their_transfer_encoding() {
        let qp = mail(
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             Z=C3=BCrich is =\r\nlive\r\nsee https://x.test/?a=3Db\r\n",
        );
        assert_eq!(qp.body(), "Zürich is live\nsee https://x.test/?a=b\n");
        let b64 = mail("Content-Transfer-Encoding: base64\r\n\r\nWsO8cmlj\r\naA==\r\n");
        assert_eq!(b64.body(), "Zürich");
        let plain = mail("Content-Transfer-Encoding: 7bit\r\n\r\nhello\r\nworld\r\n");
        assert_eq!(plain.body(), "hello\nworld\n");
    }
}
