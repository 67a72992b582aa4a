//! The market change feed on PostgreSQL, behind the [`ChangeFeed`] port: a connection of its own
//! listens on `market_changes` (the `markets` table's triggers announce every new version and
//! every deletion in the writing transaction, and keep them in the `market_changes` table) and
//! records each change in this instance's [`FenceBook`].
//!
//! Being current is proved, not assumed: every quarter of the propagation bound the listener
//! sends a notification of its own on the same channel. PostgreSQL delivers notifications in
//! commit order, so when that one comes back, every change committed before it was sent has
//! been recorded. The feed is current while the last echoed heartbeat was sent less than the
//! bound ago; a writer whose cache update failed waits the bound, so no instance that hears
//! nothing for that long keeps serving hits. After (re)connecting, the listener reads the
//! changes still inside the book's window from the table, so an outage of the feed loses none.

use async_trait::async_trait;
use diesel::deserialize::QueryableByName;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Bool, Double, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use markets_domain::RepositoryError;
use markets_domain::cache::{ChangeFeed, Fence, FenceBook};
use markets_domain::market::MarketId;
use secrecy::{ExposeSecret, SecretString};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

use crate::error::{SERVICE, from_connect, from_query};
use crate::task::Background;

/// The channel the triggers notify.
const CHANNEL: &str = "market_changes";

/// Where the listener connects and how quickly changes must reach it.
#[derive(Debug, Clone)]
pub struct ChangeFeedSettings {
    /// The database.
    pub url: SecretString,
    /// The propagation bound: how long after its commit a change is known to every instance
    /// that serves cache hits.
    pub propagation: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

/// This instance's view of the feed: when the last heartbeat that came back was sent.
#[derive(Debug)]
struct FeedState {
    origin: Instant,
    /// Nanoseconds from `origin` to the sending of the last echoed heartbeat, plus one; zero
    /// while none has come back since the listener (re)connected.
    caught_up: AtomicU64,
    propagation: Duration,
}

impl FeedState {
    fn caught_up_to(&self, sent: Instant) {
        let nanos = u64::try_from(sent.duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX);
        self.caught_up
            .fetch_max(nanos.saturating_add(1), Ordering::SeqCst);
    }

    fn lost(&self) {
        self.caught_up.store(0, Ordering::SeqCst);
    }

    fn is_current(&self) -> bool {
        match AtomicU64::load(&self.caught_up, Ordering::SeqCst) {
            0 => false,
            nanos => {
                let sent = self.origin + Duration::from_nanos(nanos - 1);
                sent.elapsed() < self.propagation
            }
        }
    }
}

/// The [`ChangeFeed`] of a PostgreSQL database. Cheap to clone; the listener runs in the task
/// [`PgChangeFeed::spawn`] starts and stops (the feed stops being current) when its
/// [`Background`] handle is dropped.
#[derive(Debug, Clone)]
pub struct PgChangeFeed {
    state: Arc<FeedState>,
}

impl PgChangeFeed {
    /// Starts listening, in a task of its own, and recording changes in `book`. The feed is not
    /// current until the listener has connected, caught up and heard its first heartbeat.
    pub fn spawn(settings: ChangeFeedSettings, book: Arc<FenceBook>) -> (Self, Background) {
        let state = Arc::new(FeedState {
            origin: Instant::now(),
            caught_up: AtomicU64::new(0),
            propagation: settings.propagation,
        });
        let listener = Listener {
            settings,
            book,
            state: state.clone(),
        };
        (Self { state }, Background::spawn(listener.run()))
    }
}

#[async_trait]
impl ChangeFeed for PgChangeFeed {
    fn is_current(&self) -> bool {
        self.state.is_current()
    }

    async fn settle(&self) {
        tokio::time::sleep(self.state.propagation).await;
    }
}

/// The listening loop and what it needs.
struct Listener {
    settings: ChangeFeedSettings,
    book: Arc<FenceBook>,
    state: Arc<FeedState>,
}

impl Listener {
    /// Reconnection waits, doubling from the first to the last.
    const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
    /// Heartbeats sent but not yet echoed, past which the session counts as dead.
    const MAX_UNECHOED: usize = 16;
    /// How often expired fences and change rows are dropped.
    const PRUNE_EVERY: Duration = Duration::from_secs(30);

    async fn run(self) {
        let mut backoff = Self::BACKOFF.0;
        loop {
            let Err(error) = self.session(&mut backoff).await;
            self.state.lost();
            // Once per outage: the first failure after the feed was current (or at start).
            if backoff == Self::BACKOFF.0 {
                warn!(%error, "cache change feed lost: cache hits are refused until it catches up");
            } else {
                debug!(%error, "cache change feed still cannot reconnect");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Self::BACKOFF.1);
        }
    }

    /// One connection's life: listen, catch up from the table, then heartbeat and record
    /// changes until something fails. `backoff` is reset once the session is current.
    async fn session(&self, backoff: &mut Duration) -> Result<Infallible, RepositoryError> {
        let mut conn = self.connect().await?;
        let caught_up = self.catch_up(&mut conn).await?;
        let heartbeat = self.settings.propagation / 4;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut unechoed = VecDeque::new();
        let mut pruned = Instant::now();
        let mut announced = false;
        for seq in 0u64.. {
            let sent = Instant::now();
            send_heartbeat(&mut conn, &token, seq, heartbeat).await?;
            unechoed.push_back((seq, sent));
            if unechoed.len() > Self::MAX_UNECHOED {
                return Err(RepositoryError::unavailable(
                    SERVICE,
                    "heartbeats are not echoed",
                ));
            }
            self.listen(&mut conn, &token, &mut unechoed, heartbeat)
                .await?;
            if !announced && self.state.is_current() {
                info!(caught_up, "cache change feed is current");
                announced = true;
                *backoff = Self::BACKOFF.0;
            }
            if pruned.elapsed() >= Self::PRUNE_EVERY {
                self.prune(&mut conn).await?;
                pruned = Instant::now();
            }
        }
        Err(RepositoryError::unavailable(SERVICE, "heartbeats ran out"))
    }

    async fn connect(&self) -> Result<AsyncPgConnection, RepositoryError> {
        let url = self.settings.url.expose_secret();
        let mut conn = tokio::time::timeout(
            self.settings.connect_timeout,
            AsyncPgConnection::establish(url),
        )
        .await
        .map_err(|_| RepositoryError::unavailable(SERVICE, "connecting timed out"))?
        .map_err(from_connect)?;
        // Heartbeats need not be durable, only ordered: an asynchronous commit is visible, and
        // its notification delivered after every change committed before it, without waiting
        // for a WAL flush that a busy server may take seconds to give.
        conn.batch_execute(&format!("SET synchronous_commit = off; LISTEN {CHANNEL}"))
            .await
            .map_err(from_query)?;
        Ok(conn)
    }

    /// Records the changes still inside the book's window; returns how many. Runs after
    /// `LISTEN`, so a change committed meanwhile is in the table, announced, or both.
    async fn catch_up(&self, conn: &mut AsyncPgConnection) -> Result<usize, RepositoryError> {
        let rows = sql_query(
            "SELECT market_id, version, deleted, \
                    EXTRACT(EPOCH FROM now() - changed_at)::float8 AS age_secs \
             FROM market_changes WHERE changed_at > now() - make_interval(secs => $1)",
        )
        .bind::<Double, _>(self.book.window().as_secs_f64())
        .load::<ChangeRow>(conn)
        .await
        .map_err(from_query)?;
        for row in &rows {
            let fence = if row.deleted {
                Fence::Deleted
            } else {
                Fence::Version(u64::try_from(row.version).unwrap_or(0))
            };
            let age = Duration::try_from_secs_f64(row.age_secs.max(0.0)).unwrap_or(Duration::MAX);
            self.book.record(MarketId::from(row.market_id), fence, age);
        }
        Ok(rows.len())
    }

    /// Records notifications until `period` has passed.
    async fn listen(
        &self,
        conn: &mut AsyncPgConnection,
        token: &str,
        unechoed: &mut VecDeque<(u64, Instant)>,
        period: Duration,
    ) -> Result<(), RepositoryError> {
        let deadline = tokio::time::Instant::now() + period;
        let mut notifications = std::pin::pin!(conn.notifications_stream());
        loop {
            match tokio::time::timeout_at(deadline, notifications.next()).await {
                Err(_) => return Ok(()),
                Ok(Some(Ok(notification))) => match parse(&notification.payload) {
                    Some(Payload::Change(id, fence)) => {
                        self.book.record(id, fence, Duration::ZERO);
                    }
                    Some(Payload::Heartbeat(from, seq)) if from == token => {
                        while let Some(&(sent_seq, sent)) = unechoed.front()
                            && sent_seq <= seq
                        {
                            unechoed.pop_front();
                            if sent_seq == seq {
                                self.state.caught_up_to(sent);
                            }
                        }
                    }
                    Some(Payload::Heartbeat(..)) | None => {}
                },
                Ok(Some(Err(error))) => return Err(from_query(error)),
                Ok(None) => {
                    return Err(RepositoryError::unavailable(
                        SERVICE,
                        "the listening connection closed",
                    ));
                }
            }
        }
    }

    /// Drops expired fences, and change rows twice the window old (other instances may keep
    /// a longer window; twice leaves them room).
    async fn prune(&self, conn: &mut AsyncPgConnection) -> Result<(), RepositoryError> {
        self.book.prune();
        sql_query(
            "DELETE FROM market_changes WHERE changed_at < now() - make_interval(secs => $1)",
        )
        .bind::<Double, _>(2.0 * self.book.window().as_secs_f64())
        .execute(conn)
        .await
        .map_err(from_query)?;
        Ok(())
    }
}

/// Sends heartbeat `seq` of the session `token`, within `timeout`.
async fn send_heartbeat(
    conn: &mut AsyncPgConnection,
    token: &str,
    seq: u64,
    timeout: Duration,
) -> Result<(), RepositoryError> {
    let query = sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(CHANNEL)
        .bind::<Text, _>(format!("heartbeat {token} {seq}"));
    tokio::time::timeout(timeout, query.execute(conn))
        .await
        .map_err(|_| RepositoryError::unavailable(SERVICE, "a heartbeat timed out"))?
        .map_err(from_query)?;
    Ok(())
}

/// A row of `market_changes`, with its age by the server's clock.
#[derive(QueryableByName)]
struct ChangeRow {
    #[diesel(sql_type = SqlUuid)]
    market_id: uuid::Uuid,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Bool)]
    deleted: bool,
    #[diesel(sql_type = Double)]
    age_secs: f64,
}

/// What a notification on the channel says.
#[derive(Debug, PartialEq, Eq)]
enum Payload<'a> {
    /// `<market id> <version>` or `<market id> deleted`, from the triggers.
    Change(MarketId, Fence),
    /// `heartbeat <session token> <seq>`, from a listener.
    Heartbeat(&'a str, u64),
}

fn parse(payload: &str) -> Option<Payload<'_>> {
    let mut words = payload.split(' ');
    let first = words.next()?;
    let second = words.next()?;
    if first == "heartbeat" {
        let seq = words.next()?.parse().ok()?;
        return Some(Payload::Heartbeat(second, seq));
    }
    let id = MarketId::from(first.parse::<uuid::Uuid>().ok()?);
    let fence = match second {
        "deleted" => Fence::Deleted,
        version => Fence::Version(version.parse().ok()?),
    };
    Some(Payload::Change(id, fence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_changes_deletions_or_heartbeats() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(
            parse(&format!("{id} 7")),
            Some(Payload::Change(MarketId::from(id), Fence::Version(7)))
        );
        assert_eq!(
            parse(&format!("{id} deleted")),
            Some(Payload::Change(MarketId::from(id), Fence::Deleted))
        );
        assert_eq!(
            parse("heartbeat abc 12"),
            Some(Payload::Heartbeat("abc", 12))
        );
        for junk in [
            "",
            "x",
            "not-a-uuid 3",
            &format!("{id} -1"),
            "heartbeat abc",
        ] {
            assert_eq!(parse(junk), None, "{junk}");
        }
    }
}
