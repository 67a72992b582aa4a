//! [`UserRepository`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Text};
use markets_domain::RepositoryError;
use markets_domain::audit::AuditEvent;
use markets_domain::auth::{NewAccountToken, PasswordHash, TokenHash, TokenPurpose};
use markets_domain::error::ValidationError;
use markets_domain::jobs::{JobId, JobKind};
use markets_domain::permission::Role;
use markets_domain::user::{
    CreateUserError, DisplayName, Email, NewUser, RoleChange, UpdateRoleError, User, UserAccount,
    UserId, UserRepository,
};

use crate::audit::record;
use crate::error::{corrupt, from_query, is_unique_violation};
use crate::jobs::enqueue;
use crate::pool::SqlitePool;
use crate::schema::users;
use crate::values::{Micros, SqlId};

/// Users in the `users` table.
#[derive(Debug, Clone)]
pub struct SqliteUserRepository {
    pool: SqlitePool,
}

impl SqliteUserRepository {
    /// A repository over `pool`.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// The public columns of a user: what every read selects.
#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::sqlite::Sqlite))]
struct UserRow {
    id: SqlId,
    email: String,
    display_name: String,
    role: String,
    created_at: Micros,
    token_epoch: i64,
    email_verified: bool,
}

/// A user with their password hash, selected only to log them in.
#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::sqlite::Sqlite))]
struct AccountRow {
    #[diesel(embed)]
    user: UserRow,
    password_hash: String,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUserRow {
    id: SqlId,
    email: String,
    display_name: String,
    password_hash: String,
    role: &'static str,
    email_verified: bool,
    created_at: Micros,
    updated_at: Micros,
}

/// A single-use token consumed by a statement: whose it was, and its stored hash.
#[derive(QueryableByName)]
struct ConsumedRow {
    #[diesel(sql_type = Binary)]
    user_id: SqlId,
    #[diesel(sql_type = Binary)]
    token_hash: Vec<u8>,
}

/// Marks the unused, unexpired token with this hash and purpose used at `now` and returns its
/// user, or `None`; inside the caller's write transaction, so it is single-use. The stored hash
/// is compared again in constant time, not left to the index alone.
fn consume(
    conn: &mut diesel::SqliteConnection,
    token: &TokenHash,
    purpose: TokenPurpose,
    now: i64,
) -> Result<Option<SqlId>, diesel::result::Error> {
    let row = diesel::sql_query(
        "UPDATE account_tokens SET used_at = ?3 \
         WHERE token_hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3 \
         RETURNING user_id, token_hash",
    )
    .bind::<Binary, _>(token.as_bytes().to_vec())
    .bind::<Text, _>(purpose.as_str())
    .bind::<BigInt, _>(now)
    .get_result::<ConsumedRow>(conn)
    .optional()?;
    Ok(row
        .filter(|row| TokenHash::from_bytes(&row.token_hash).is_some_and(|stored| stored == *token))
        .map(|row| row.user_id))
}

/// Whether `id` is the only admin; run inside the write transaction, which serialises it with
/// every other role change.
fn is_last_admin(
    conn: &mut diesel::SqliteConnection,
    id: UserId,
) -> Result<bool, diesel::result::Error> {
    let admins: Vec<SqlId> = users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .select(users::id)
        .load(conn)?;
    Ok(matches!(admins.as_slice(), [only] if only.0 == id.as_uuid()))
}

impl TryFrom<UserRow> for User {
    type Error = RepositoryError;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let invalid = corrupt("users");
        Ok(User {
            id: UserId::from(row.id.0),
            email: Email::parse(&row.email).map_err(&invalid)?,
            display_name: DisplayName::parse(&row.display_name).map_err(&invalid)?,
            role: row.role.parse::<Role>().map_err(&invalid)?,
            created_at: row.created_at.0,
            token_epoch: u64::try_from(row.token_epoch)
                .map_err(|_| invalid(ValidationError::new("token_epoch", "is negative")))?,
            email_verified: row.email_verified,
        })
    }
}

#[async_trait]
impl UserRepository for SqliteUserRepository {
    async fn create(&self, user: NewUser) -> Result<User, CreateUserError> {
        let now = Micros::now();
        let row = NewUserRow {
            id: SqlId(user.id.as_uuid()),
            email: user.email.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            password_hash: user.password_hash.as_str().to_owned(),
            role: user.role.as_str(),
            email_verified: user.email_verified,
            created_at: now,
            updated_at: now,
        };
        let jobs = user.jobs();
        let inserted = self
            .pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let inserted = diesel::insert_into(users::table)
                        .values(&row)
                        .returning(UserRow::as_returning())
                        .get_result(conn)?;
                    enqueue(conn, &jobs, now)?;
                    Ok(inserted)
                })
            })
            .await?
            .map_err(|error| match error {
                // The email column is NOCASE: this is the case-insensitive uniqueness.
                e if is_unique_violation(&e, "users.email") => CreateUserError::EmailTaken,
                e => from_query(e).into(),
            })?;
        Ok(User::try_from(inserted)?)
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        self.pool
            .run(move |conn| {
                users::table
                    .find(SqlId(id.as_uuid()))
                    .select(UserRow::as_select())
                    .first(conn)
                    .optional()
            })
            .await?
            .map_err(from_query)?
            .map(User::try_from)
            .transpose()
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<UserAccount>, RepositoryError> {
        let email = email.as_str().to_owned();
        let row = self
            .pool
            .run(move |conn| {
                // `=` on a NOCASE column compares case-insensitively, through users_email_key.
                users::table
                    .filter(users::email.eq(email))
                    .select(AccountRow::as_select())
                    .first(conn)
                    .optional()
            })
            .await?
            .map_err(from_query)?;
        row.map(|row| {
            Ok(UserAccount {
                user: User::try_from(row.user)?,
                password_hash: PasswordHash::new(row.password_hash),
            })
        })
        .transpose()
    }

    async fn find_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, RepositoryError> {
        let ids: Vec<SqlId> = ids.iter().map(|id| SqlId(id.as_uuid())).collect();
        self.pool
            .run(move |conn| {
                users::table
                    .filter(users::id.eq_any(ids))
                    .select(UserRow::as_select())
                    .load(conn)
            })
            .await?
            .map_err(from_query)?
            .into_iter()
            .map(User::try_from)
            .collect()
    }

    /// The replaced role is read inside the same immediate transaction, which holds the write
    /// lock from its start: no other change can come between the read and the write, nor
    /// between counting the other admins and a demotion.
    async fn update_role(
        &self,
        id: UserId,
        role: Role,
        audit: Option<&AuditEvent>,
    ) -> Result<Option<RoleChange>, UpdateRoleError> {
        let audit = audit.cloned();
        let changed = self
            .pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    if role != Role::Admin && is_last_admin(conn, id)? {
                        return Ok(Err(UpdateRoleError::LastAdmin));
                    }
                    let row = users::table.find(SqlId(id.as_uuid()));
                    let Some(previous) =
                        row.select(users::role).first::<String>(conn).optional()?
                    else {
                        return Ok(Ok(None));
                    };
                    let previous = previous.parse::<Role>().map_err(|error| {
                        diesel::result::Error::DeserializationError(Box::new(error))
                    })?;
                    let updated = diesel::update(row)
                        .set((
                            users::role.eq(role.as_str()),
                            users::updated_at.eq(Micros::now()),
                        ))
                        .returning(UserRow::as_returning())
                        .get_result(conn)?;
                    if let Some(event) = &audit {
                        record(conn, &event.with_previous_role(previous))?;
                    }
                    Ok(Ok(Some((updated, previous))))
                })
            })
            .await?
            .map_err(from_query)??;
        changed
            .map(|(user, previous)| {
                Ok(RoleChange {
                    user: User::try_from(user)?,
                    previous,
                })
            })
            .transpose()
            .map_err(UpdateRoleError::Repository)
    }

    async fn has_role(&self, role: Role) -> Result<bool, RepositoryError> {
        self.pool
            .run(move |conn| {
                diesel::select(diesel::dsl::exists(
                    users::table.filter(users::role.eq(role.as_str())),
                ))
                .get_result(conn)
            })
            .await?
            .map_err(from_query)
    }

    async fn store_token(&self, token: &NewAccountToken) -> Result<(), RepositoryError> {
        let token = token.clone();
        self.pool
            .write(move |conn| {
                diesel::sql_query(
                    "INSERT INTO account_tokens \
                     (token_hash, purpose, user_id, expires_at, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .bind::<Binary, _>(token.hash.as_bytes().to_vec())
                .bind::<Text, _>(token.purpose.as_str())
                .bind::<Binary, _>(SqlId(token.user_id.as_uuid()))
                .bind::<BigInt, _>(Micros(token.expires_at))
                .bind::<BigInt, _>(Micros::now())
                .execute(conn)
            })
            .await?
            .map(drop)
            .map_err(from_query)
    }

    /// One statement: the lookup and the insert run alike whether or not the email is known.
    async fn request_password_reset(&self, email: &Email) -> Result<(), RepositoryError> {
        let email = email.as_str().to_owned();
        self.pool
            .write(move |conn| {
                let now = Micros::now();
                diesel::sql_query(
                    "INSERT INTO jobs (id, kind, subject_id, run_at, created_at, updated_at) \
                     SELECT ?1, ?2, id, ?3, ?3, ?3 FROM users WHERE email = ?4",
                )
                .bind::<Binary, _>(SqlId(JobId::new().as_uuid()))
                .bind::<Text, _>(JobKind::SendPasswordReset.as_str())
                .bind::<BigInt, _>(now)
                .bind::<Text, _>(email)
                .execute(conn)
            })
            .await?
            .map(drop)
            .map_err(from_query)
    }

    async fn verify_email(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepositoryError> {
        let purpose = TokenPurpose::EmailVerification;
        self.redeem(token, purpose, now, users::email_verified.eq(true))
            .await
    }

    async fn reset_password(
        &self,
        token: &TokenHash,
        password: &PasswordHash,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepositoryError> {
        let changes = (
            users::password_hash.eq(password.as_str().to_owned()),
            users::token_epoch.eq(users::token_epoch + 1),
            users::email_verified.eq(true),
        );
        self.redeem(token, TokenPurpose::PasswordReset, now, changes)
            .await
    }
}

impl SqliteUserRepository {
    /// Consumes `token` (a `purpose` token) and the user's other `purpose` tokens, and applies
    /// `changes` to the user, in one write transaction; the user as updated, or `None` if the
    /// token is not good.
    async fn redeem<C>(
        &self,
        token: &TokenHash,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
        changes: C,
    ) -> Result<Option<User>, RepositoryError>
    where
        C: diesel::AsChangeset<Target = users::table> + Send + 'static,
        C::Changeset: diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite>,
    {
        let token = *token;
        let now = Micros(now).get();
        let updated = self
            .pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let Some(user_id) = consume(conn, &token, purpose, now)? else {
                        return Ok(None);
                    };
                    diesel::sql_query(
                        "UPDATE account_tokens SET used_at = ?3 \
                         WHERE user_id = ?1 AND purpose = ?2 AND used_at IS NULL",
                    )
                    .bind::<Binary, _>(user_id)
                    .bind::<Text, _>(purpose.as_str())
                    .bind::<BigInt, _>(now)
                    .execute(conn)?;
                    diesel::update(users::table.find(user_id))
                        .set((changes, users::updated_at.eq(Micros::now())))
                        .returning(UserRow::as_returning())
                        .get_result(conn)
                        .optional()
                })
            })
            .await?
            .map_err(from_query)?;
        updated.map(User::try_from).transpose()
    }
}
