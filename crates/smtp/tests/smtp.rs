//! The SMTP notifier against a local SMTP server ([`SmtpSink`]): what arrives, how failures
//! are classified, concurrency; and the sink itself, spoken to by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use markets_smtp::testing::SmtpSink;
use markets_smtp::{
    MarketCreatedNotice, Notifier, NotifyError, SetupError, SmtpNotifier, SmtpSettings, TlsMode,
};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn notice(key: &str) -> MarketCreatedNotice {
    MarketCreatedNotice::new(
        key.to_owned(),
        "ada@example.com".to_owned(),
        "Ada Lovelace".to_owned(),
        "Analytical engines".to_owned(),
        format!("https://markets.example.com/markets/{key}"),
    )
}

fn notifier(settings: &SmtpSettings) -> SmtpNotifier {
    SmtpNotifier::new(settings).unwrap()
}

#[tokio::test]
async fn a_notice_arrives_as_an_email_marked_with_its_key() {
    let sink = SmtpSink::start().await;
    let key = "0192f0c4-7b1e-7c3a-9d2e-5f6a7b8c9d0e";
    notifier(&sink.settings())
        .market_created(&notice(key))
        .await
        .unwrap();
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let mail = &messages[0];
    assert_eq!(mail.from, "noreply@markets.test");
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_eq!(
        mail.header("From").unwrap(),
        "Markets <noreply@markets.test>"
    );
    // lettre quotes display names that hold a space.
    assert_eq!(
        mail.header("To").unwrap(),
        "\"Ada Lovelace\" <ada@example.com>"
    );
    assert_eq!(
        mail.header("Subject").unwrap(),
        "Your market \"Analytical engines\" is live"
    );
    assert_eq!(
        mail.header("Message-ID").unwrap(),
        format!("<{key}@markets>")
    );
    assert_eq!(mail.header("X-Idempotency-Key").unwrap(), key);
    assert_eq!(mail.header("Auto-Submitted").unwrap(), "auto-generated");
    assert!(mail.header("Date").is_some());
    let body = mail.body();
    assert!(body.contains("Hello Ada Lovelace,"), "{body}");
    assert!(body.contains("\"Analytical engines\""), "{body}");
    assert!(
        body.contains(&format!("https://markets.example.com/markets/{key}")),
        "{body}"
    );
}

#[tokio::test]
async fn names_outside_ascii_and_long_links_survive_the_encodings() {
    let sink = SmtpSink::start().await;
    let mut notice = notice("job-utf8");
    notice.to_name = "Zoë Œuvre".to_owned();
    notice.market_name = "Zürich café ☕".to_owned();
    notice.market_url = format!("https://markets.example.com/markets/{}", "x".repeat(120));
    notifier(&sink.settings())
        .market_created(&notice)
        .await
        .unwrap();
    let mail = &sink.messages()[0];
    assert!(mail.data.is_ascii(), "needs no 8BITMIME: {}", mail.data);
    assert_eq!(
        mail.header("Subject").unwrap(),
        "Your market \"Zürich café ☕\" is live"
    );
    assert!(mail.header("To").unwrap().contains("Zoë Œuvre"));
    let body = mail.body();
    assert!(body.contains("Hello Zoë Œuvre,"), "{body}");
    assert!(body.contains("\"Zürich café ☕\""), "{body}");
    assert!(body.contains(&notice.market_url), "{body}");
}

#[tokio::test]
async fn a_transient_refusal_is_unavailable_and_the_next_send_succeeds() {
    let sink = SmtpSink::start().await;
    let notifier = notifier(&sink.settings());
    sink.reject_next(1, 451);
    let error = notifier.market_created(&notice("a")).await.unwrap_err();
    assert!(matches!(error, NotifyError::Unavailable(_)), "{error:?}");
    assert!(sink.messages().is_empty());
    notifier.market_created(&notice("a")).await.unwrap();
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn a_permanent_refusal_is_rejected_with_the_reply() {
    let sink = SmtpSink::start().await;
    sink.reject_next(1, 550);
    let error = notifier(&sink.settings())
        .market_created(&notice("a"))
        .await
        .unwrap_err();
    let NotifyError::Rejected(reason) = error else {
        panic!("expected Rejected, got {error:?}");
    };
    assert!(reason.contains("550"), "{reason}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings = SmtpSettings {
        host: "127.0.0.1".to_owned(),
        port,
        tls: TlsMode::None,
        ..SmtpSettings::new("unused", "noreply@markets.test")
    };
    let error = notifier(&settings)
        .market_created(&notice("a"))
        .await
        .unwrap_err();
    assert!(matches!(error, NotifyError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn a_server_that_never_greets_is_unavailable_after_the_timeout() {
    // Connections complete in the kernel's backlog but are never accepted: no greeting.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = SmtpSettings {
        host: "127.0.0.1".to_owned(),
        port: silent.local_addr().unwrap().port(),
        tls: TlsMode::None,
        timeout: Duration::from_millis(300),
        ..SmtpSettings::new("unused", "noreply@markets.test")
    };
    let error = notifier(&settings)
        .market_created(&notice("a"))
        .await
        .unwrap_err();
    assert!(matches!(error, NotifyError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn after_a_server_hangs_mid_message_new_sends_use_fresh_connections() {
    let sink = SmtpSink::start().await;
    let settings = SmtpSettings {
        timeout: Duration::from_millis(300),
        ..sink.settings()
    };
    let notifier = notifier(&settings);
    notifier.market_created(&notice("warm-up")).await.unwrap();
    sink.stall_next(1);
    let error = notifier.market_created(&notice("a")).await.unwrap_err();
    assert!(matches!(error, NotifyError::Unavailable(_)), "{error:?}");
    // Let lettre's background task hand the abandoned connection back, as it would have in a
    // busy service by now. Were it reused, this send would wait on it and time out too.
    tokio::task::yield_now().await;
    notifier.market_created(&notice("a")).await.unwrap();
    let keys: Vec<_> = sink
        .messages()
        .iter()
        .map(|mail| mail.header("X-Idempotency-Key").unwrap())
        .collect();
    assert_eq!(keys, ["warm-up", "a"]);
}

#[tokio::test]
async fn an_invalid_recipient_is_rejected_without_connecting() {
    let sink = SmtpSink::start().await;
    let notifier = notifier(&sink.settings());
    for to in [
        "",
        "ada",
        "ada@",
        "@example.com",
        "ada lovelace@example.com",
    ] {
        let mut invalid = notice("a");
        invalid.to = to.to_owned();
        let error = notifier.market_created(&invalid).await.unwrap_err();
        assert!(
            matches!(error, NotifyError::Rejected(_)),
            "{to:?}: {error:?}"
        );
    }
    assert_eq!(sink.connections(), 0);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn notices_sent_one_after_another_share_a_connection() {
    let sink = SmtpSink::start().await;
    let notifier = notifier(&sink.settings());
    for n in 0..3 {
        notifier
            .market_created(&notice(&format!("job-{n}")))
            .await
            .unwrap();
        // lettre hands the connection back to its pool in a task of its own: let it run.
        tokio::task::yield_now().await;
    }
    assert_eq!(sink.messages().len(), 3);
    assert_eq!(sink.connections(), 1);
}

#[tokio::test]
async fn notices_sent_at_once_all_arrive() {
    let sink = SmtpSink::start().await;
    let notifier = notifier(&sink.settings());
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..12 {
        let notifier = notifier.clone();
        sends.spawn(async move { notifier.market_created(&notice(&format!("job-{n}"))).await });
    }
    while let Some(sent) = sends.join_next().await {
        sent.unwrap().unwrap();
    }
    let mut keys: Vec<_> = sink
        .messages()
        .iter()
        .map(|mail| mail.header("X-Idempotency-Key").unwrap())
        .collect();
    keys.sort();
    let mut expected: Vec<_> = (0..12).map(|n| format!("job-{n}")).collect();
    expected.sort();
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused() {
    let sink = SmtpSink::start().await;
    let refused = |settings: SmtpSettings| match SmtpNotifier::new(&settings) {
        Err(SetupError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let password = Some(SecretString::from("hunter2"));
    assert_eq!(
        refused(SmtpSettings {
            from: "not an address".to_owned(),
            ..sink.settings()
        }),
        "from"
    );
    assert_eq!(
        refused(SmtpSettings {
            username: Some("ada".to_owned()),
            ..sink.settings()
        }),
        "password"
    );
    // A password never travels in plain text.
    assert_eq!(
        refused(SmtpSettings {
            username: Some("ada".to_owned()),
            password: password.clone(),
            ..sink.settings()
        }),
        "tls"
    );
    assert_eq!(
        refused(SmtpSettings {
            timeout: Duration::ZERO,
            ..sink.settings()
        }),
        "timeout"
    );
    let with_tls = SmtpNotifier::new(&SmtpSettings {
        username: Some("ada".to_owned()),
        password,
        ..SmtpSettings::new("smtp.example.com", "Markets <noreply@example.com>")
    })
    .unwrap();
    let debug = format!("{with_tls:?}");
    assert!(
        debug.contains("smtp.example.com") && !debug.contains("hunter2"),
        "{debug}"
    );
}

#[test]
fn the_notifier_needs_a_runtime() {
    let settings = SmtpSettings::new("smtp.example.com", "noreply@example.com");
    assert!(matches!(
        SmtpNotifier::new(&settings),
        Err(SetupError::NoRuntime)
    ));
}

/// A client speaking SMTP line by line.
struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(sink: &SmtpSink) -> Self {
        let (reader, writer) = TcpStream::connect(("127.0.0.1", sink.port()))
            .await
            .unwrap()
            .into_split();
        let mut client = Self {
            reader: BufReader::new(reader),
            writer,
        };
        assert!(client.reply().await.starts_with("220 "));
        client
    }

    /// The whole reply, continuation lines included.
    async fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.unwrap();
            reply.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return reply;
            }
        }
    }

    async fn send(&mut self, text: &str) -> String {
        self.writer.write_all(text.as_bytes()).await.unwrap();
        self.reply().await
    }
}

#[tokio::test]
async fn the_sink_takes_several_messages_per_connection_and_undoes_dot_stuffing() {
    let sink = SmtpSink::start().await;
    let mut client = Client::connect(&sink).await;
    let ehlo = client.send("EHLO client.test\r\n").await;
    assert!(
        ehlo.starts_with("250-") && ehlo.contains("8BITMIME"),
        "{ehlo}"
    );
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert!(client.send("DATA\r\n").await.starts_with("503 "));
    assert!(
        client
            .send("MAIL FROM:<a@x.test> BODY=8BITMIME\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(
        client
            .send("RCPT TO:<b@x.test>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(
        client
            .send("rcpt to: <c@x.test>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(client.send("DATA\r\n").await.starts_with("354 "));
    let data = "Subject: one\r\n\r\n..leading dot\r\n.\r\n";
    assert!(client.send(data).await.starts_with("250 "));
    assert!(client.send("NOOP\r\n").await.starts_with("250 "));
    assert!(client.send("MAIL FROM:<>\r\n").await.starts_with("250 "));
    assert!(client.send("RSET\r\n").await.starts_with("250 "));
    assert!(
        client
            .send("RCPT TO:<b@x.test>\r\n")
            .await
            .starts_with("503 ")
    );
    assert!(client.send("MAIL FROM:<>\r\n").await.starts_with("250 "));
    assert!(
        client
            .send("RCPT TO:<d@x.test>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(client.send("DATA\r\n").await.starts_with("354 "));
    assert!(
        client
            .send("Subject: two\r\n\r\nbody\r\n.\r\n")
            .await
            .starts_with("250 ")
    );
    sink.reject_next(1, 452);
    assert!(
        client
            .send("MAIL FROM:<a@x.test>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(
        client
            .send("RCPT TO:<b@x.test>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(client.send("DATA\r\n").await.starts_with("354 "));
    assert!(
        client
            .send("Subject: three\r\n\r\n.\r\n")
            .await
            .starts_with("452 ")
    );
    assert!(client.send("QUIT\r\n").await.starts_with("221 "));

    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].from, "a@x.test");
    assert_eq!(messages[0].to, ["b@x.test", "c@x.test"]);
    assert_eq!(messages[0].data, "Subject: one\r\n\r\n.leading dot\r\n");
    assert_eq!(messages[0].body(), ".leading dot\n");
    assert_eq!(messages[1].from, "");
    assert_eq!(messages[1].to, ["d@x.test"]);
    assert_eq!(messages[1].header("subject").unwrap(), "two");
    assert_eq!(sink.connections(), 1);
}

#[tokio::test]
async fn the_sink_serves_connections_at_the_same_time() {
    let sink = SmtpSink::start().await;
    let mut first = Client::connect(&sink).await;
    let mut second = Client::connect(&sink).await;
    assert!(first.send("HELO one\r\n").await.starts_with("250 "));
    assert!(second.send("HELO two\r\n").await.starts_with("250 "));
    assert!(
        first
            .send("MAIL FROM:<one@x.test>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(
        second
            .send("MAIL FROM:<two@x.test>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(
        first
            .send("RCPT TO:<r@x.test>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(
        second
            .send("RCPT TO:<r@x.test>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(first.send("DATA\r\n").await.starts_with("354 "));
    assert!(second.send("DATA\r\n").await.starts_with("354 "));
    assert!(second.send("\r\ntwo\r\n.\r\n").await.starts_with("250 "));
    assert!(first.send("\r\none\r\n.\r\n").await.starts_with("250 "));
    let senders: Vec<_> = sink.messages().into_iter().map(|mail| mail.from).collect();
    assert_eq!(senders, ["two@x.test", "one@x.test"]);
    assert_eq!(sink.connections(), 2);
}
