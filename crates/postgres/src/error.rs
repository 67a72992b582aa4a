//! How driver and pool errors become domain errors: nothing from diesel crosses a port.
//!
//! The line that matters to callers runs between the connection and the statement. When the
//! connection or the server fails (a restart, a killed backend, a dropped socket, no free
//! connection) the database is *unavailable*: the caller answers 503, and the same request can
//! succeed a moment later on a fresh connection. When a statement fails on a working connection,
//! retrying will not help: that is a bug or a constraint, and *unexpected* (500) unless the
//! repository maps it to a domain error first (e.g. a taken email).
//!
//! What diesel-async 0.9 hands us (`src/pg/error_helper.rs`, `src/pg/mod.rs`):
//! - a server error whose SQLSTATE diesel names becomes that `DatabaseErrorKind` (unique,
//!   foreign key, check, not-null, restrict and exclusion violations, serialization failure,
//!   read-only transaction); **every other server error becomes `DatabaseErrorKind::Unknown`
//!   and its SQLSTATE is dropped**: the boxed `DatabaseErrorInformation` keeps the message,
//!   detail, hint, table, column and constraint, and diesel 2.3's trait has no accessor for the
//!   code (nor a way to downcast to tokio-postgres's `DbError`);
//! - an error with no SQLSTATE at all (the socket failed, the connection task ended, the server
//!   closed the connection) becomes `DatabaseErrorKind::UnableToSendCommand`, carrying
//!   tokio-postgres's own text: "connection closed", "error communicating with the server";
//! - `DatabaseErrorKind::ClosedConnection` is only produced by diesel's libpq connection, not by
//!   diesel-async; it is honoured anyway, as it means what it says.
//!
//! So the classification is [`cause`], over the kind and the SQLSTATE, and the SQLSTATE of the
//! connection-level server errors a query can receive is recovered from their message by
//! [`sqlstate`].

use diesel::ConnectionError;
use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::PoolError;
use markets_domain::{RepositoryError, ValidationError};

/// The dependency name used in "<service> is currently unavailable".
pub(crate) const SERVICE: &str = "database";

/// Whether a database error is the connection's fault or the statement's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The connection or the server failed: the database is unavailable, and the same work can
    /// succeed later on another connection.
    Connection,
    /// The statement failed on a working connection: retrying it will fail the same way.
    Statement,
}

/// Classifies a database error by diesel's `kind` and the server's `sqlstate` (when known).
///
/// Connection-level, because the session is gone or the server refuses sessions:
/// - `UnableToSendCommand`: diesel-async's kind for every failure without a SQLSTATE, i.e. the
///   request or its answer never crossed the socket; `ClosedConnection` likewise. (tokio-postgres
///   files a few client-side mistakes there too, such as a wrong number of parameters or a
///   message too large to encode; diesel's typed queries with array binds do not make them.)
/// - SQLSTATE class `08` (connection exception);
/// - `57P01` admin shutdown (`pg_terminate_backend`, a smart or fast shutdown, the postmaster
///   gone), `57P02` crash shutdown, `57P03` cannot connect now (starting up, shutting down, in
///   recovery);
/// - `53300` too many connections.
///
/// Everything else is the statement's, including the other codes of classes 53 and 57
/// (`53200` out of memory, `57014` statement timeout or cancel): the server is there and said
/// no to this statement.
fn cause(kind: DatabaseErrorKind, sqlstate: Option<&str>) -> Cause {
    if matches!(
        kind,
        DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection
    ) {
        return Cause::Connection;
    }
    match sqlstate {
        Some(code) if code.starts_with("08") => Cause::Connection,
        Some("57P01" | "57P02" | "57P03" | "53300") => Cause::Connection,
        _ => Cause::Statement,
    }
}

/// The server messages of the connection-level errors a *query* can receive, with their
/// SQLSTATE, worded as PostgreSQL (up to 18) words them.
///
/// Only these two arrive as an error on an open session. A crash shutdown (`57P02`) is sent
/// as a warning, not an error, and is followed by the socket closing (`UnableToSendCommand`);
/// `57P03` and `53300` refuse a connection while it is being opened, which the pool reports as a
/// connect error (see [`from_pool`]).
const CONNECTION_MESSAGES: [(&str, &str); 2] = [
    // `pg_terminate_backend`, and every session on a smart or fast shutdown
    // (`pg_ctl restart -m fast`).
    (
        "terminating connection due to administrator command",
        "57P01",
    ),
    // The backend noticed that the postmaster died (crash, `kill -9`).
    (
        "terminating connection due to unexpected postmaster exit",
        "57P01",
    ),
];

/// The SQLSTATE of a connection-level server error, recovered from its message because
/// diesel-async drops the code of every error it files under `DatabaseErrorKind::Unknown`.
///
/// Matching on text depends on the server's `lc_messages` being English (`C` or `en_*`, the
/// default of most installations); under another language this returns `None`, and such an
/// error counts as the statement's. Only the one query that was running when its connection was
/// killed is misclassified then: the connection is closed, so the next query on it fails with
/// `UnableToSendCommand`, and the pool replaces it on the next checkout.
fn sqlstate(info: &dyn DatabaseErrorInformation) -> Option<&'static str> {
    CONNECTION_MESSAGES
        .iter()
        .find(|(message, _)| info.message() == *message)
        .map(|&(_, code)| code)
}

/// Classifies any diesel error (see [`cause`]).
///
/// Beyond the server's errors, two states of diesel-async's transaction manager are the
/// connection's: `BrokenTransactionManager` (an earlier `BEGIN`, `COMMIT` or `ROLLBACK` failed or
/// was cancelled, so the session's state is unknown and the pool discards the connection), and
/// `RollbackErrorOnCommit` when the failed commit or the rollback diesel-async tried after it
/// failed on the connection.
fn cause_of(error: &DieselError) -> Cause {
    match error {
        DieselError::DatabaseError(kind, info) => cause(*kind, sqlstate(&**info)),
        DieselError::BrokenTransactionManager => Cause::Connection,
        DieselError::RollbackErrorOnCommit {
            rollback_error,
            commit_error,
        } => {
            if cause_of(commit_error) == Cause::Connection
                || cause_of(rollback_error) == Cause::Connection
            {
                Cause::Connection
            } else {
                Cause::Statement
            }
        }
        _ => Cause::Statement,
    }
}

/// A pool checkout that failed is the database being unavailable, whatever the reason in
/// practice: no connection free within the wait timeout, none opened within the create
/// timeout, the server refused or failed the new connection (`Backend`: refused, starting up,
/// shutting down, too many clients, bad credentials), or the pool was closed at shutdown.
///
/// Recycle failures never come out of `get()`: deadpool discards such a connection and tries
/// the next or opens one. Only a pool built without a runtime, or a failing `post_create` hook
/// (none is installed), is a bug of ours.
pub(crate) fn from_pool(error: PoolError) -> RepositoryError {
    match error {
        PoolError::Timeout(_) | PoolError::Backend(_) | PoolError::Closed => {
            RepositoryError::unavailable(SERVICE, error)
        }
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            RepositoryError::unexpected(error)
        }
    }
}

/// A connection of our own (not from the pool) could not be opened: as with the pool's
/// `Backend` errors, the database is unavailable.
pub(crate) fn from_connect(error: ConnectionError) -> RepositoryError {
    RepositoryError::unavailable(SERVICE, error)
}

/// A failed query or transaction: a connection-level failure (see [`cause_of`]) is an outage,
/// anything else is unexpected.
///
/// A `COMMIT` whose connection died reports the database unavailable although the transaction
/// may have committed: its outcome is unknown, so a caller that retries must tolerate finding
/// the work done.
pub(crate) fn from_query(error: DieselError) -> RepositoryError {
    match cause_of(&error) {
        Cause::Connection => RepositoryError::unavailable(SERVICE, error),
        Cause::Statement => RepositoryError::unexpected(error),
    }
}

/// Whether `error` is a violation of the named unique constraint or index.
pub(crate) fn is_unique_violation(error: &DieselError, constraint: &str) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(constraint)
    )
}

/// A stored value that the domain refuses: the schema's checks and the domain's disagree.
#[derive(Debug, thiserror::Error)]
#[error("a stored {table} row holds an invalid value")]
pub(crate) struct CorruptRow {
    table: &'static str,
    #[source]
    source: ValidationError,
}

/// Maps a domain validation failure on a stored value to an unexpected repository error.
pub(crate) fn corrupt(table: &'static str) -> impl Fn(ValidationError) -> RepositoryError {
    move |source| RepositoryError::unexpected(CorruptRow { table, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadpool::managed::TimeoutType;
    use diesel_async::pooled_connection::PoolError as BackendError;

    /// A server error as diesel-async boxes it: a message, and a constraint for violations.
    #[derive(Debug, Default)]
    struct Info {
        message: &'static str,
        constraint: Option<&'static str>,
    }

    impl DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.message
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            self.constraint
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn database(kind: DatabaseErrorKind, message: &'static str) -> DieselError {
        DieselError::DatabaseError(
            kind,
            Box::new(Info {
                message,
                ..Info::default()
            }),
        )
    }

    /// What a query received when the server terminated its session mid-statement.
    fn terminated() -> DieselError {
        database(
            DatabaseErrorKind::Unknown,
            "terminating connection due to administrator command",
        )
    }

    /// What a query sent on a connection whose socket is already closed receives.
    fn closed() -> DieselError {
        database(DatabaseErrorKind::UnableToSendCommand, "connection closed")
    }

    fn serialization_failure() -> DieselError {
        database(
            DatabaseErrorKind::SerializationFailure,
            "could not serialize access due to concurrent update",
        )
    }

    fn is_unavailable(error: &RepositoryError) -> bool {
        matches!(
            error,
            RepositoryError::Unavailable {
                service: "database",
                ..
            }
        )
    }

    #[test]
    fn connection_exceptions_and_shutdowns_are_the_connections_fault() {
        for code in [
            "08000", "08001", "08003", "08004", "08006", "08007", "08P01", "57P01", "57P02",
            "57P03", "53300",
        ] {
            assert_eq!(
                cause(DatabaseErrorKind::Unknown, Some(code)),
                Cause::Connection,
                "{code}"
            );
        }
    }

    #[test]
    fn failures_to_send_or_receive_are_the_connections_fault() {
        for kind in [
            DatabaseErrorKind::UnableToSendCommand,
            DatabaseErrorKind::ClosedConnection,
        ] {
            assert_eq!(cause(kind, None), Cause::Connection, "{kind:?}");
        }
    }

    #[test]
    fn other_server_errors_are_the_statements_fault() {
        for (kind, code) in [
            (DatabaseErrorKind::Unknown, Some("42601")), // syntax error
            (DatabaseErrorKind::Unknown, Some("42P01")), // undefined table
            (DatabaseErrorKind::Unknown, Some("57014")), // statement timeout, cancel
            (DatabaseErrorKind::Unknown, Some("57P04")), // database dropped
            (DatabaseErrorKind::Unknown, Some("53200")), // out of memory
            (DatabaseErrorKind::Unknown, Some("40P01")), // deadlock
            (DatabaseErrorKind::Unknown, None),
            (DatabaseErrorKind::UniqueViolation, Some("23505")),
            (DatabaseErrorKind::ForeignKeyViolation, Some("23503")),
            (DatabaseErrorKind::CheckViolation, Some("23514")),
            (DatabaseErrorKind::SerializationFailure, Some("40001")),
            (DatabaseErrorKind::ReadOnlyTransaction, Some("25006")),
        ] {
            assert_eq!(cause(kind, code), Cause::Statement, "{kind:?} {code:?}");
        }
    }

    #[test]
    fn the_sqlstate_of_a_terminated_session_is_recovered_from_its_message() {
        let message = |message| Info {
            message,
            ..Info::default()
        };
        for text in [
            "terminating connection due to administrator command",
            "terminating connection due to unexpected postmaster exit",
        ] {
            assert_eq!(sqlstate(&message(text)), Some("57P01"), "{text}");
        }
        for text in [
            "syntax error at or near \"SELEC\"",
            "canceling statement due to statement timeout",
            // A translated server message is not recognised (see `sqlstate`).
            "Verbindung wird abgebrochen aufgrund von Befehl des Administrators",
        ] {
            assert_eq!(sqlstate(&message(text)), None, "{text}");
        }
    }

    #[test]
    fn lost_connections_and_terminated_sessions_are_outages() {
        for error in [
            terminated(),
            database(
                DatabaseErrorKind::Unknown,
                "terminating connection due to unexpected postmaster exit",
            ),
            closed(),
            database(
                DatabaseErrorKind::UnableToSendCommand,
                "error communicating with the server",
            ),
            // The connection task ended while the query waited for it.
            database(DatabaseErrorKind::UnableToSendCommand, "channel closed"),
            database(
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection",
            ),
            DieselError::BrokenTransactionManager,
        ] {
            let shown = format!("{error:?}");
            let mapped = from_query(error);
            assert!(is_unavailable(&mapped), "{shown} became {mapped:?}");
            assert_eq!(mapped.to_string(), "database is currently unavailable");
        }
    }

    #[test]
    fn a_commit_lost_with_its_connection_is_an_outage() {
        // diesel-async returns the COMMIT's own error when the connection dies under it.
        assert!(is_unavailable(&from_query(closed())));
        for (commit_error, rollback_error) in [
            (serialization_failure(), closed()),
            (closed(), closed()),
            (terminated(), closed()),
        ] {
            let error = DieselError::RollbackErrorOnCommit {
                rollback_error: Box::new(rollback_error),
                commit_error: Box::new(commit_error),
            };
            let shown = format!("{error:?}");
            assert!(is_unavailable(&from_query(error)), "{shown}");
        }
    }

    #[test]
    fn statement_failures_stay_unexpected() {
        for error in [
            database(
                DatabaseErrorKind::Unknown,
                "syntax error at or near \"SELEC\"",
            ),
            database(
                DatabaseErrorKind::Unknown,
                "canceling statement due to statement timeout",
            ),
            database(
                DatabaseErrorKind::UniqueViolation,
                "duplicate key value violates unique constraint \"users_email_key\"",
            ),
            serialization_failure(),
            DieselError::RollbackErrorOnCommit {
                rollback_error: Box::new(serialization_failure()),
                commit_error: Box::new(serialization_failure()),
            },
            DieselError::NotFound,
            DieselError::DeserializationError("bad row".into()),
            DieselError::AlreadyInTransaction,
        ] {
            let shown = format!("{error:?}");
            let mapped = from_query(error);
            assert!(
                matches!(mapped, RepositoryError::Unexpected(_)),
                "{shown} became {mapped:?}"
            );
        }
    }

    #[test]
    fn unique_violations_are_recognised_by_constraint() {
        let violation = DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new(Info {
                message: "duplicate key value violates unique constraint \"users_email_key\"",
                constraint: Some("users_email_key"),
            }),
        );
        assert!(is_unique_violation(&violation, "users_email_key"));
        assert!(!is_unique_violation(&violation, "users_pkey"));
        assert!(!is_unique_violation(&closed(), "users_email_key"));
    }

    #[test]
    fn a_checkout_that_fails_is_an_outage_unless_the_pool_is_misbuilt() {
        for error in [
            PoolError::Timeout(TimeoutType::Wait),
            PoolError::Timeout(TimeoutType::Create),
            PoolError::Timeout(TimeoutType::Recycle),
            PoolError::Closed,
            PoolError::Backend(BackendError::ConnectionError(
                ConnectionError::BadConnection("Connection refused".to_owned()),
            )),
        ] {
            let shown = format!("{error:?}");
            assert!(is_unavailable(&from_pool(error)), "{shown}");
        }
        assert!(matches!(
            from_pool(PoolError::NoRuntimeSpecified),
            RepositoryError::Unexpected(_)
        ));
        assert!(is_unavailable(&from_connect(
            ConnectionError::BadConnection("the database system is starting up".to_owned())
        )));
    }

    /// The two real cases, on PostgreSQL: a session the server ended, and a statement it refused.
    mod on_the_server {
        use super::*;
        use crate::schema::users;
        use crate::testing::{TestDatabase, backend_pid};
        use diesel::prelude::*;
        use diesel::sql_types::Bool;
        use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
        use std::time::Duration;

        /// Waits until session `pid` is inside `pg_sleep`, so that it is killed mid-statement.
        async fn wait_until_sleeping(conn: &mut AsyncPgConnection, pid: i32) {
            for _ in 0..500 {
                let sleeping: bool = diesel::select(diesel::dsl::sql::<Bool>(&format!(
                    "EXISTS (SELECT FROM pg_stat_activity \
                     WHERE pid = {pid} AND wait_event = 'PgSleep')"
                )))
                .get_result(conn)
                .await
                .unwrap();
                if sleeping {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("session {pid} never started sleeping");
        }

        #[tokio::test]
        async fn a_query_on_a_connection_the_server_terminated_is_an_outage() {
            let db = TestDatabase::new().await;
            let mut conn = db.pool().get().await.unwrap();
            let pid = backend_pid(&mut conn).await;
            db.terminate(pid).await;

            let error = conn.batch_execute("SELECT 1").await.unwrap_err();
            // Usually the connection's task has already seen the server hang up, and the query
            // is refused as `UnableToSendCommand` ("connection closed"); had the task not run yet,
            // it would read the server's FATAL 57P01 and hand the query that. Either is an outage.
            let shown = format!("{error:?}");
            let mapped = from_query(error);
            assert!(is_unavailable(&mapped), "{shown} became {mapped:?}");
            assert_eq!(mapped.to_string(), "database is currently unavailable");
        }

        #[tokio::test]
        async fn a_query_running_when_the_server_terminates_its_session_is_an_outage() {
            let db = TestDatabase::new().await;
            let pool = db.pool();
            let mut conn = pool.get().await.unwrap();
            let mut watcher = pool.get().await.unwrap();
            let pid = backend_pid(&mut conn).await;

            let (slept, ()) = tokio::join!(conn.batch_execute("SELECT pg_sleep(30)"), async {
                wait_until_sleeping(&mut watcher, pid).await;
                db.terminate(pid).await;
            });
            let error = slept.unwrap_err();
            // The case from the incident: the server's FATAL answers the statement, and
            // diesel-async files 57P01 under `Unknown` without its code.
            assert!(
                matches!(
                    &error,
                    DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                        if info.message() == "terminating connection due to administrator command"
                ),
                "{error:?}"
            );
            let mapped = from_query(error);
            assert!(is_unavailable(&mapped), "{mapped:?}");
        }

        #[tokio::test]
        async fn ordinary_sql_errors_stay_unexpected_and_leave_the_connection_working() {
            let db = TestDatabase::new().await;
            let mut conn = db.pool().get().await.unwrap();

            let error = conn.batch_execute("SELEC 1").await.unwrap_err();
            assert!(
                matches!(
                    error,
                    DieselError::DatabaseError(DatabaseErrorKind::Unknown, _)
                ),
                "{error:?}"
            );
            let mapped = from_query(error);
            assert!(
                matches!(mapped, RepositoryError::Unexpected(_)),
                "{mapped:?}"
            );

            let insert = |email: &'static str| {
                diesel::insert_into(users::table).values((
                    users::id.eq(uuid::Uuid::new_v4()),
                    users::email.eq(email),
                    users::display_name.eq("Twice"),
                    users::password_hash.eq("x"),
                ))
            };
            insert("twice@example.com")
                .execute(&mut conn)
                .await
                .unwrap();
            let error = insert("TWICE@example.com")
                .execute(&mut conn)
                .await
                .unwrap_err();
            assert!(is_unique_violation(&error, "users_email_key"), "{error:?}");
            let mapped = from_query(error);
            assert!(
                matches!(mapped, RepositoryError::Unexpected(_)),
                "{mapped:?}"
            );

            conn.batch_execute("SELECT 1").await.unwrap();
        }
    }
}
