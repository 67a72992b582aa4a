//! [`UserRepository`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use markets_domain::RepositoryError;
use markets_domain::audit::AuditEvent;
use markets_domain::auth::PasswordHash;
use markets_domain::permission::Role;
use markets_domain::user::{
    CreateUserError, DisplayName, Email, NewUser, User, UserAccount, UserId, UserRepository,
};
use uuid::Uuid;

use crate::audit::record;
use crate::error::{corrupt, from_query, is_unique_violation};
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
#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    role: String,
    created_at: DateTime<Utc>,
}

/// A user with their password hash, selected only to log them in.
#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct AccountRow {
    #[diesel(embed)]
    user: UserRow,
    password_hash: String,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUserRow<'a> {
    id: Uuid,
    email: &'a str,
    display_name: &'a str,
    password_hash: &'a str,
    role: &'a str,
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
        };
        let inserted = diesel::insert_into(users::table)
            .values(&row)
            .returning(UserRow::as_returning())
            .get_result(&mut conn)
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

    async fn update_role(
        &self,
        id: UserId,
        role: Role,
        audit: Option<&AuditEvent>,
    ) -> Result<Option<User>, RepositoryError> {
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            let updated = diesel::update(users::table.find(id.as_uuid()))
                .set((
                    users::role.eq(role.as_str()),
                    users::updated_at.eq(diesel::dsl::now),
                ))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            if let (Some(_), Some(event)) = (&updated, audit) {
                record(conn, event).await?;
            }
            Ok(updated)
        })
        .await
        .map_err(from_query)?
        .map(User::try_from)
        .transpose()
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
}
