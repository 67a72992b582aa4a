//! [`UserRepository`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
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
use uuid::Uuid;

use crate::audit::record;
use crate::error::{corrupt, from_query, is_unique_violation};
use crate::jobs::enqueue;
use crate::pool::PgPool;
use crate::schema::users;

diesel::define_sql_function!(fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// Users in the `users` table.
#[derive(Debug, Clone)]
pub struct PgUserRepository {
    pool: PgPool,
}

impl PgUserRepository {
    /// A repository over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// The public columns of a user: what every read selects.
#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    role: String,
    created_at: DateTime<Utc>,
    token_epoch: i64,
    email_verified: bool,
}

/// A user with their password hash, selected only to log them in.
#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct AccountRow {
    #[diesel(embed)]
    user: UserRow,
    password_hash: String,
}

/// A user as a role change left them, with the role it replaced.
#[derive(QueryableByName)]
struct RoleChangeRow {
    #[diesel(embed)]
    user: UserRow,
    #[diesel(sql_type = Text)]
    previous_role: String,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUserRow<'a> {
    id: Uuid,
    email: &'a str,
    display_name: &'a str,
    password_hash: &'a str,
    role: &'a str,
    email_verified: bool,
}

/// A single-use token consumed by a statement: whose it was, and its stored hash.
#[derive(QueryableByName)]
struct ConsumedRow {
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Bytea)]
    token_hash: Vec<u8>,
}

/// Marks the unused, unexpired token with this hash and purpose used at `now` and returns its
/// user, or `None`. The row lock makes it single-use: a concurrent consumer waits, then finds
/// it used. The stored hash is compared again in constant time, not left to the index alone.
async fn consume(
    conn: &mut AsyncPgConnection,
    token: &TokenHash,
    purpose: TokenPurpose,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, diesel::result::Error> {
    let row = diesel::sql_query(
        "UPDATE account_tokens SET used_at = $3 \
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 \
         RETURNING user_id, token_hash",
    )
    .bind::<Bytea, _>(token.as_bytes().as_slice())
    .bind::<Text, _>(purpose.as_str())
    .bind::<Timestamptz, _>(now)
    .get_result::<ConsumedRow>(conn)
    .await
    .optional()?;
    Ok(row
        .filter(|row| TokenHash::from_bytes(&row.token_hash).is_some_and(|stored| stored == *token))
        .map(|row| row.user_id))
}

/// Whether `id` is the only admin, after locking every admin row for the transaction.
async fn is_last_admin(
    conn: &mut AsyncPgConnection,
    id: UserId,
) -> Result<bool, diesel::result::Error> {
    let admins: Vec<Uuid> = users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .order(users::id)
        .select(users::id)
        .for_update()
        .load(conn)
        .await?;
    Ok(admins == [id.as_uuid()])
}

impl TryFrom<UserRow> for User {
    type Error = RepositoryError;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let invalid = corrupt("users");
        Ok(User {
            id: UserId::from(row.id),
            email: Email::parse(&row.email).map_err(&invalid)?,
            display_name: DisplayName::parse(&row.display_name).map_err(&invalid)?,
            role: row.role.parse::<Role>().map_err(&invalid)?,
            created_at: row.created_at,
            token_epoch: u64::try_from(row.token_epoch)
                .map_err(|_| invalid(ValidationError::new("token_epoch", "is negative")))?,
            email_verified: row.email_verified,
        })
    }
}

#[async_trait]
impl UserRepository for PgUserRepository {
    async fn create(&self, user: NewUser) -> Result<User, CreateUserError> {
        let mut conn = self.pool.get().await?;
        let row = NewUserRow {
            id: user.id.as_uuid(),
            email: user.email.as_str(),
            display_name: user.display_name.as_str(),
            password_hash: user.password_hash.as_str(),
            role: user.role.as_str(),
            email_verified: user.email_verified,
        };
        let jobs = user.jobs();
        let inserted = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                let inserted = diesel::insert_into(users::table)
                    .values(&row)
                    .returning(UserRow::as_returning())
                    .get_result(conn)
                    .await?;
                enqueue(conn, &jobs).await?;
                Ok(inserted)
            })
            .await
            .map_err(|error| match error {
                e if is_unique_violation(&e, "users_email_key") => CreateUserError::EmailTaken,
                e => from_query(e).into(),
            })?;
        Ok(User::try_from(inserted)?)
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        let mut conn = self.pool.get().await?;
        users::table
            .find(id.as_uuid())
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_query)?
            .map(User::try_from)
            .transpose()
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<UserAccount>, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let row = users::table
            .filter(lower(users::email).eq(email.as_str()))
            .select(AccountRow::as_select())
            .first(&mut conn)
            .await
            .optional()
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
        let mut conn = self.pool.get().await?;
        let ids: Vec<Uuid> = ids.iter().map(UserId::as_uuid).collect();
        users::table
            .filter(users::id.eq_any(ids))
            .select(UserRow::as_select())
            .load(&mut conn)
            .await
            .map_err(from_query)?
            .into_iter()
            .map(User::try_from)
            .collect()
    }

    /// One statement reads the replaced role and writes the new one: the subquery locks the
    /// row, so a concurrent change cannot slip between the read and the write. A change away
    /// from `admin` first locks every admin row (in id order, so two changes never deadlock):
    /// a concurrent demotion waits, then re-reads who is still admin, and so sees this one.
    async fn update_role(
        &self,
        id: UserId,
        role: Role,
        audit: Option<&AuditEvent>,
    ) -> Result<Option<RoleChange>, UpdateRoleError> {
        let mut conn = self.pool.get().await?;
        let changed = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                if role != Role::Admin && is_last_admin(conn, id).await? {
                    return Ok(Err(UpdateRoleError::LastAdmin));
                }
                let row = diesel::sql_query(
                    "UPDATE users SET role = $2, updated_at = now() \
                     FROM (SELECT id, role FROM users WHERE id = $1 FOR UPDATE) AS old \
                     WHERE users.id = old.id \
                     RETURNING users.id, users.email, users.display_name, users.role, \
                     users.created_at, users.token_epoch, users.email_verified, \
                     old.role AS previous_role",
                )
                .bind::<SqlUuid, _>(id.as_uuid())
                .bind::<Text, _>(role.as_str())
                .get_result::<RoleChangeRow>(conn)
                .await
                .optional()?;
                let Some(row) = row else {
                    return Ok(Ok(None));
                };
                let previous = row.previous_role.parse::<Role>().map_err(|error| {
                    diesel::result::Error::DeserializationError(Box::new(error))
                })?;
                if let Some(event) = audit {
                    record(conn, &event.with_previous_role(previous)).await?;
                }
                Ok(Ok(Some((row.user, previous))))
            })
            .await
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
        let mut conn = self.pool.get().await?;
        diesel::select(diesel::dsl::exists(
            users::table.filter(users::role.eq(role.as_str())),
        ))
        .get_result(&mut conn)
        .await
        .map_err(from_query)
    }

    async fn store_token(&self, token: &NewAccountToken) -> Result<(), RepositoryError> {
        let mut conn = self.pool.get().await?;
        diesel::sql_query(
            "INSERT INTO account_tokens (token_hash, purpose, user_id, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind::<Bytea, _>(token.hash.as_bytes().as_slice())
        .bind::<Text, _>(token.purpose.as_str())
        .bind::<SqlUuid, _>(token.user_id.as_uuid())
        .bind::<Timestamptz, _>(token.expires_at)
        .execute(&mut conn)
        .await
        .map(drop)
        .map_err(from_query)
    }

    /// One statement: the lookup and the insert run alike whether or not the email is known.
    async fn request_password_reset(&self, email: &Email) -> Result<(), RepositoryError> {
        let mut conn = self.pool.get().await?;
        diesel::sql_query(
            "INSERT INTO jobs (id, kind, subject_id) \
             SELECT $1, $2, id FROM users WHERE lower(email) = $3",
        )
        .bind::<SqlUuid, _>(JobId::new().as_uuid())
        .bind::<Text, _>(JobKind::SendPasswordReset.as_str())
        .bind::<Text, _>(email.as_str())
        .execute(&mut conn)
        .await
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
            users::password_hash.eq(password.as_str()),
            users::token_epoch.eq(users::token_epoch + 1),
            users::email_verified.eq(true),
        );
        self.redeem(token, TokenPurpose::PasswordReset, now, changes)
            .await
    }
}

impl PgUserRepository {
    /// Consumes `token` (a `purpose` token) and the user's other `purpose` tokens, and applies
    /// `changes` to the user, in one transaction; the user as updated, or `None` if the token
    /// is not good.
    async fn redeem<C>(
        &self,
        token: &TokenHash,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
        changes: C,
    ) -> Result<Option<User>, RepositoryError>
    where
        C: diesel::AsChangeset<Target = users::table> + Send,
        C::Changeset: diesel::query_builder::QueryFragment<diesel::pg::Pg> + Send,
    {
        let mut conn = self.pool.get().await?;
        let updated = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                let Some(user_id) = consume(conn, token, purpose, now).await? else {
                    return Ok(None);
                };
                diesel::sql_query(
                    "UPDATE account_tokens SET used_at = $3 \
                     WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
                )
                .bind::<SqlUuid, _>(user_id)
                .bind::<Text, _>(purpose.as_str())
                .bind::<Timestamptz, _>(now)
                .execute(conn)
                .await?;
                diesel::update(users::table.find(user_id))
                    .set((changes, users::updated_at.eq(diesel::dsl::now)))
                    .returning(UserRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()
            })
            .await
            .map_err(from_query)?;
        updated.map(User::try_from).transpose()
    }
}
