//! The contract of [`MarketRepository`] and [`UserRepository`].
//!
//! The two are tested together because markets reference their creators: a fixture hands out
//! both repositories over the same, initially empty, storage.

use chrono::{TimeDelta, Utc};
use futures_util::future::join_all;
use markets_domain::auth::{NewAccountToken, OneTimeToken, PasswordHash, TokenPurpose};
use markets_domain::market::{
    CreateMarketError, Creation, Description, IdempotencyKey, KeysetRequest, Market, MarketFilter,
    MarketId, MarketName, MarketPatch, MarketRepository, MarketSort, MarketStatus, MarketSummary,
    NewMarket, PageRequest, PageSize, SearchLimit, SearchQuery, SortField, Volume,
};
use markets_domain::permission::Role;
use markets_domain::user::{
    CreateUserError, DisplayName, Email, NewUser, UpdateRoleError, User, UserId, UserRepository,
};

/// Fresh, empty storage behind both repositories.
pub trait RepositoryFixture: Send + Sync + 'static {
    /// The market repository under test.
    type Markets: MarketRepository;
    /// The user repository under test, sharing storage with `Markets`.
    type Users: UserRepository;

    /// The markets.
    fn markets(&self) -> &Self::Markets;
    /// The users.
    fn users(&self) -> &Self::Users;
}

/// A market and a user repository over one storage: the fixture of a test that needs nothing
/// else of its store (a store's own tests of what the contract's cases leave behind).
#[derive(Debug)]
pub struct Repositories<M, U> {
    /// The markets.
    pub markets: M,
    /// The users, sharing storage with `markets`.
    pub users: U,
}

impl<M: MarketRepository, U: UserRepository> RepositoryFixture for Repositories<M, U> {
    type Markets = M;
    type Users = U;

    fn markets(&self) -> &M {
        &self.markets
    }

    fn users(&self) -> &U {
        &self.users
    }
}

/// Generates one `#[test]` per repository contract case, each on a fixture from `$make`
/// (an expression evaluating to a future of a [`RepositoryFixture`]).
#[macro_export]
macro_rules! repository_contract {
    ($make:expr) => {
        $crate::__contract_cases!(repository, $make;
            user_is_found_by_id_email_and_ids,
            user_email_is_unique,
            user_role_can_change,
            the_last_admin_keeps_the_role,
            admins_demoting_each_other_at_once_leave_one,
            users_are_found_by_role,
            a_reset_token_sets_the_password_once_and_advances_the_epoch,
            expired_and_unknown_reset_tokens_change_nothing,
            a_verification_token_verifies_the_email_once,
            unknown_users_are_absent,
            market_is_stored_whole,
            market_needs_an_existing_creator,
            markets_are_found_in_one_batch,
            update_changes_only_given_fields,
            update_and_delete_report_missing_markets,
            the_latest_read_sees_every_committed_write,
            delete_checks_the_version_it_is_given,
            a_key_replays_its_first_create,
            a_key_is_its_creators_own_and_refuses_another_request,
            concurrent_creates_with_one_key_create_one_market,
            volume_is_kept_exactly,
            offset_pages_follow_every_order,
            offset_pages_filter_by_status,
            keyset_pages_follow_every_order,
            keyset_pages_filter_by_status,
            keyset_pages_are_stable_under_inserts,
            totals_stay_exact_under_concurrent_writes,
            text_search_ranks_name_matches_first,
        );
    };
}

/// A new user named `name`, with a unique email.
pub(crate) async fn user<F: RepositoryFixture>(fixture: &F, name: &str) -> User {
    let new = NewUser {
        id: UserId::new(),
        email: Email::parse(&format!("{name}@example.com")).unwrap(),
        display_name: DisplayName::parse(name).unwrap(),
        password_hash: PasswordHash::new(format!("$argon2id$v=19$m=8,t=1,p=1$salt${name}")),
        role: Role::User,
        email_verified: true,
    };
    fixture.users().create(new).await.unwrap()
}

/// A market to create, described as `About {name}.`.
pub(crate) fn new_market(
    creator: &User,
    name: &str,
    status: MarketStatus,
    cents: i64,
) -> NewMarket {
    NewMarket {
        id: MarketId::new(),
        creator_id: creator.id,
        name: MarketName::parse(name).unwrap(),
        description: Description::parse(&format!("About {name}.")).unwrap(),
        status,
        volume: Volume::from_cents(cents).unwrap(),
    }
}

/// A market created (with no jobs) through the fixture's repository.
pub(crate) async fn market<F: RepositoryFixture>(
    fixture: &F,
    creator: &User,
    name: &str,
    status: MarketStatus,
    cents: i64,
) -> Market {
    let new = new_market(creator, name, status, cents);
    fixture.markets().create(new, &[]).await.unwrap()
}

/// Seven markets by two creators, with a shared volume and all three statuses.
async fn seed<F: RepositoryFixture>(fixture: &F) -> Vec<Market> {
    let ann = user(fixture, "ann").await;
    let bob = user(fixture, "bob").await;
    let specs = [
        (&ann, "alpha", MarketStatus::Open, 500),
        (&bob, "bravo", MarketStatus::Closed, 100),
        (&ann, "charlie", MarketStatus::Open, 900),
        (&bob, "delta", MarketStatus::Resolved, 500),
        (&ann, "echo", MarketStatus::Open, 0),
        (&bob, "foxtrot", MarketStatus::Open, 500),
        (&ann, "golf", MarketStatus::Closed, 250),
    ];
    let mut markets = Vec::new();
    for (creator, name, status, cents) in specs {
        markets.push(market(fixture, creator, name, status, cents).await);
    }
    markets
}

const SORTS: [&str; 4] = ["-created_at", "created_at", "-volume", "volume"];

/// `markets` as a list in `sort` order (ties broken by id) would show them.
fn expected(markets: &[Market], filter: MarketFilter, sort: MarketSort) -> Vec<MarketSummary> {
    let mut summaries: Vec<MarketSummary> = markets
        .iter()
        .filter(|m| filter.status.is_none_or(|s| m.status == s))
        .cloned()
        .map(MarketSummary::from)
        .collect();
    summaries.sort_by(|a, b| {
        let by_key = match sort.field {
            SortField::CreatedAt => a.created_at.cmp(&b.created_at),
            SortField::Volume => a.volume.cmp(&b.volume),
        };
        let ascending = by_key.then_with(|| a.id.cmp(&b.id));
        if sort.descending {
            ascending.reverse()
        } else {
            ascending
        }
    });
    summaries
}

fn size(n: u32) -> PageSize {
    PageSize::new("page_size", n).unwrap()
}

async fn all_offset_pages<F: RepositoryFixture>(
    fixture: &F,
    filter: MarketFilter,
    sort: MarketSort,
    total: usize,
) -> Vec<MarketSummary> {
    let mut seen = Vec::new();
    for number in 1..=total.div_ceil(3) as u32 + 1 {
        let page = PageRequest::new(number, size(3)).unwrap();
        let page = fixture
            .markets()
            .find_all(filter, sort, page)
            .await
            .unwrap();
        assert_eq!(page.total, total as u64, "total on page {number} ({sort})");
        assert!(page.items.len() <= 3, "page {number} exceeds its size");
        seen.extend(page.items);
    }
    seen
}

async fn all_keyset_pages<F: RepositoryFixture>(
    fixture: &F,
    filter: MarketFilter,
    sort: MarketSort,
) -> Vec<MarketSummary> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let request = KeysetRequest::new(sort, after, size(2)).unwrap();
        let page = fixture.markets().find_after(filter, request).await.unwrap();
        assert!(
            page.items.len() <= 2,
            "keyset page exceeds its limit ({sort})"
        );
        seen.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return seen,
        }
        assert!(
            seen.len() <= 20,
            "keyset paging does not terminate ({sort})"
        );
    }
}

/// A created user can be read back by id, by email and in a batch.
pub async fn user_is_found_by_id_email_and_ids<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let bob = user(fixture, "bob").await;
    assert_eq!(ann.role, Role::User);
    assert_eq!(
        fixture.users().find_by_id(ann.id).await.unwrap(),
        Some(ann.clone())
    );
    let account = fixture
        .users()
        .find_by_email(&ann.email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.user, ann);
    assert!(
        account.password_hash.as_str().ends_with("$ann"),
        "hash not kept"
    );
    let mut found = fixture
        .users()
        .find_by_ids(&[bob.id, UserId::new(), ann.id, bob.id])
        .await
        .unwrap();
    found.sort_by_key(|u| u.id);
    let mut wanted = vec![ann, bob];
    wanted.sort_by_key(|u| u.id);
    assert_eq!(
        found, wanted,
        "find_by_ids: unknown ids skipped, duplicates collapsed"
    );
}

/// A second user with the same email is refused with `EmailTaken`.
pub async fn user_email_is_unique<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let twin = NewUser {
        id: UserId::new(),
        email: Email::parse("ANN@Example.com").unwrap(),
        display_name: DisplayName::parse("Other Ann").unwrap(),
        password_hash: PasswordHash::new("x"),
        role: Role::User,
        email_verified: true,
    };
    let refused = fixture.users().create(twin).await;
    assert!(
        matches!(refused, Err(CreateUserError::EmailTaken)),
        "duplicate email gave {refused:?}"
    );
    assert_eq!(
        fixture.users().find_by_ids(&[ann.id]).await.unwrap().len(),
        1
    );
}

/// `update_role` changes the role and returns the updated user with the role it replaced.
pub async fn user_role_can_change<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let promoted = fixture
        .users()
        .update_role(ann.id, Role::Moderator, None)
        .await
        .unwrap();
    let promoted = promoted.unwrap();
    assert_eq!(promoted.user.role, Role::Moderator);
    assert_eq!(promoted.previous, Role::User, "the role it replaced");
    let stored = fixture.users().find_by_id(ann.id).await.unwrap();
    assert_eq!(stored.map(|u| u.role), Some(Role::Moderator));
}

/// A change that would leave no admin is refused and changes nothing; with another admin it
/// goes through, and promoting needs no other admin.
pub async fn the_last_admin_keeps_the_role<F: RepositoryFixture>(fixture: &F) {
    let users = fixture.users();
    let ann = user(fixture, "ann").await;
    let bob = user(fixture, "bob").await;
    assert!(
        users
            .update_role(ann.id, Role::Admin, None)
            .await
            .unwrap()
            .is_some()
    );
    let refused = users.update_role(ann.id, Role::Moderator, None).await;
    assert!(
        matches!(refused, Err(UpdateRoleError::LastAdmin)),
        "{refused:?}"
    );
    let ann_now = users.find_by_id(ann.id).await.unwrap().map(|u| u.role);
    assert_eq!(ann_now, Some(Role::Admin), "nothing changed");
    users.update_role(bob.id, Role::Admin, None).await.unwrap();
    let demoted = users.update_role(ann.id, Role::User, None).await.unwrap();
    assert_eq!(demoted.map(|c| c.previous), Some(Role::Admin));
    let refused = users.update_role(bob.id, Role::User, None).await;
    assert!(
        matches!(refused, Err(UpdateRoleError::LastAdmin)),
        "{refused:?}"
    );
    let unknown = users.update_role(UserId::new(), Role::User, None).await;
    assert!(matches!(unknown, Ok(None)), "{unknown:?}");
}

/// Two admins demoting each other concurrently: exactly one succeeds, an admin is left.
pub async fn admins_demoting_each_other_at_once_leave_one<F: RepositoryFixture>(fixture: &F) {
    let users = fixture.users();
    let ann = user(fixture, "ann").await;
    let bob = user(fixture, "bob").await;
    for round in 0..5 {
        for id in [ann.id, bob.id] {
            users.update_role(id, Role::Admin, None).await.unwrap();
        }
        let (first, second) = tokio::join!(
            users.update_role(bob.id, Role::User, None),
            users.update_role(ann.id, Role::User, None),
        );
        let outcomes = [&first, &second];
        let done = outcomes.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
        let refused = outcomes
            .iter()
            .filter(|r| matches!(r, Err(UpdateRoleError::LastAdmin)))
            .count();
        assert_eq!(
            (done, refused),
            (1, 1),
            "round {round}: {first:?} / {second:?}"
        );
        assert!(users.has_role(Role::Admin).await.unwrap(), "round {round}");
    }
}

/// A reset token for `user`, made of `seed`, valid for `minutes` from now.
async fn reset_token<F: RepositoryFixture>(
    fixture: &F,
    user: &User,
    seed: u8,
    minutes: i64,
) -> OneTimeToken {
    account_token(fixture, TokenPurpose::PasswordReset, user, seed, minutes).await
}

/// A `purpose` token for `user`, made of `seed`, valid for `minutes` from now.
async fn account_token<F: RepositoryFixture>(
    fixture: &F,
    purpose: TokenPurpose,
    user: &User,
    seed: u8,
    minutes: i64,
) -> OneTimeToken {
    let token = OneTimeToken::from_random([seed; 32]);
    let expires_at = Utc::now() + TimeDelta::minutes(minutes);
    let stored = NewAccountToken::new(&token, purpose, user.id, expires_at);
    fixture.users().store_token(&stored).await.unwrap();
    token
}

/// A user stored unverified, as self-registration stores them.
pub(crate) async fn unverified_user<F: RepositoryFixture>(fixture: &F, name: &str) -> User {
    let new = NewUser {
        id: UserId::new(),
        email: Email::parse(&format!("{name}@example.com")).unwrap(),
        display_name: DisplayName::parse(name).unwrap(),
        password_hash: PasswordHash::new("x"),
        role: Role::User,
        email_verified: false,
    };
    fixture.users().create(new).await.unwrap()
}

/// `verify_email` marks the user verified once: the token and the user's other verification
/// tokens are spent; a reset token, an expired or an unknown token verifies nothing. A password
/// reset verifies too (its link reached the address).
pub async fn a_verification_token_verifies_the_email_once<F: RepositoryFixture>(fixture: &F) {
    let users = fixture.users();
    let ann = unverified_user(fixture, "ann").await;
    assert!(!ann.email_verified);
    let purpose = TokenPurpose::EmailVerification;
    let first = account_token(fixture, purpose, &ann, 1, 60).await;
    let second = account_token(fixture, purpose, &ann, 2, 60).await;
    let reset = reset_token(fixture, &ann, 3, 30).await;
    let now = Utc::now();
    let late = now + TimeDelta::minutes(61);
    for refused in [
        users.verify_email(&reset.hash(), now).await.unwrap(),
        users.verify_email(&first.hash(), late).await.unwrap(),
        users
            .verify_email(&OneTimeToken::from_random([9; 32]).hash(), now)
            .await
            .unwrap(),
    ] {
        assert_eq!(refused, None);
    }
    assert!(
        !users
            .find_by_id(ann.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    let verified = users.verify_email(&second.hash(), now).await.unwrap();
    assert_eq!(
        verified.map(|u| (u.id, u.email_verified)),
        Some((ann.id, true))
    );
    assert_eq!(
        users.verify_email(&first.hash(), now).await.unwrap(),
        None,
        "spent with it"
    );
    assert!(
        users
            .find_by_id(ann.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    let bob = unverified_user(fixture, "bob").await;
    let bobs = reset_token(fixture, &bob, 4, 30).await;
    let new = PasswordHash::new("$argon2id$new");
    let reset = users.reset_password(&bobs.hash(), &new, now).await.unwrap();
    assert_eq!(reset.map(|u| u.email_verified), Some(true));
}

/// `reset_password` sets the password and advances the token epoch once; the token, and every
/// other reset token of the user, is spent; another user's token still works.
pub async fn a_reset_token_sets_the_password_once_and_advances_the_epoch<F: RepositoryFixture>(
    fixture: &F,
) {
    let users = fixture.users();
    let ann = user(fixture, "ann").await;
    let bob = user(fixture, "bob").await;
    assert_eq!(ann.token_epoch, 0, "a new user's epoch");
    let first = reset_token(fixture, &ann, 1, 30).await;
    let second = reset_token(fixture, &ann, 2, 30).await;
    let bobs = reset_token(fixture, &bob, 3, 30).await;
    let new = PasswordHash::new("$argon2id$new");
    let now = Utc::now();
    let reset = users
        .reset_password(&second.hash(), &new, now)
        .await
        .unwrap();
    let reset = reset.expect("a valid token resets");
    assert_eq!((reset.id, reset.token_epoch), (ann.id, 1));
    let stored = users.find_by_email(&ann.email).await.unwrap().unwrap();
    assert_eq!(stored.password_hash, new);
    assert_eq!(stored.user.token_epoch, 1);
    for spent in [&second, &first] {
        let again = users
            .reset_password(&spent.hash(), &new, now)
            .await
            .unwrap();
        assert_eq!(again, None, "spent tokens change nothing");
    }
    let ann_now = users.find_by_id(ann.id).await.unwrap().unwrap();
    assert_eq!(ann_now.token_epoch, 1, "advanced once");
    let bob_reset = users.reset_password(&bobs.hash(), &new, now).await.unwrap();
    assert_eq!(bob_reset.map(|u| u.id), Some(bob.id));
}

/// An expired or unknown token is refused and leaves the user as it was.
pub async fn expired_and_unknown_reset_tokens_change_nothing<F: RepositoryFixture>(fixture: &F) {
    let users = fixture.users();
    let ann = user(fixture, "ann").await;
    let before = users.find_by_email(&ann.email).await.unwrap().unwrap();
    let late = reset_token(fixture, &ann, 1, 30).await;
    let new = PasswordHash::new("$argon2id$new");
    let after = Utc::now() + TimeDelta::minutes(31);
    assert_eq!(
        users
            .reset_password(&late.hash(), &new, after)
            .await
            .unwrap(),
        None
    );
    let unknown = OneTimeToken::from_random([9; 32]);
    let now = Utc::now();
    assert_eq!(
        users
            .reset_password(&unknown.hash(), &new, now)
            .await
            .unwrap(),
        None
    );
    let stored = users.find_by_email(&ann.email).await.unwrap().unwrap();
    assert_eq!(stored, before);
}

/// `has_role` says whether anyone has the role, and follows role changes.
pub async fn users_are_found_by_role<F: RepositoryFixture>(fixture: &F) {
    let users = fixture.users();
    assert!(!users.has_role(Role::Admin).await.unwrap(), "empty store");
    let ann = user(fixture, "ann").await;
    assert!(users.has_role(Role::User).await.unwrap());
    assert!(!users.has_role(Role::Admin).await.unwrap());
    users.update_role(ann.id, Role::Admin, None).await.unwrap();
    assert!(users.has_role(Role::Admin).await.unwrap());
}

/// Unknown ids and emails are `None`, not errors.
pub async fn unknown_users_are_absent<F: RepositoryFixture>(fixture: &F) {
    let users = fixture.users();
    assert_eq!(users.find_by_id(UserId::new()).await.unwrap(), None);
    let nobody = Email::parse("nobody@example.com").unwrap();
    assert!(users.find_by_email(&nobody).await.unwrap().is_none());
    assert_eq!(
        users
            .update_role(UserId::new(), Role::Admin, None)
            .await
            .unwrap(),
        None
    );
    assert!(users.find_by_ids(&[]).await.unwrap().is_empty());
}

/// A created market comes back whole, with its creator, from `create` and `find_by_id`.
pub async fn market_is_stored_whole<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let new = new_market(&ann, "Will it rain?", MarketStatus::Closed, 12_345);
    let created = fixture.markets().create(new.clone(), &[]).await.unwrap();
    assert_eq!(created.id, new.id);
    assert_eq!(created.name, new.name);
    assert_eq!(created.description, new.description);
    assert_eq!(created.status, new.status);
    assert_eq!(created.volume, new.volume);
    assert_eq!(created.creator.id, ann.id);
    assert_eq!(created.creator.display_name, ann.display_name);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(created.version, 1, "versions start at 1");
    let found = fixture.markets().find_by_id(new.id).await.unwrap();
    assert_eq!(found, Some(created));
}

/// A market whose creator does not exist is refused with `UnknownCreator`.
pub async fn market_needs_an_existing_creator<F: RepositoryFixture>(fixture: &F) {
    let ghost = UserId::new();
    let mut new = new_market(&user(fixture, "ann").await, "orphan", MarketStatus::Open, 0);
    new.creator_id = ghost;
    let refused = fixture.markets().create(new.clone(), &[]).await;
    assert!(
        matches!(refused, Err(CreateMarketError::UnknownCreator(id)) if id == ghost),
        "unknown creator gave {refused:?}"
    );
    assert_eq!(fixture.markets().find_by_id(new.id).await.unwrap(), None);
}

/// `find_by_ids` returns exactly the known markets, each once.
pub async fn markets_are_found_in_one_batch<F: RepositoryFixture>(fixture: &F) {
    let markets = seed(fixture).await;
    let ids = [markets[2].id, MarketId::new(), markets[0].id, markets[2].id];
    let mut found = fixture.markets().find_by_ids(&ids).await.unwrap();
    found.sort_by_key(|m| m.id);
    let mut wanted = vec![markets[0].clone(), markets[2].clone()];
    wanted.sort_by_key(|m| m.id);
    assert_eq!(found, wanted);
    assert!(fixture.markets().find_by_ids(&[]).await.unwrap().is_empty());
}

/// A patch changes the fields it sets, leaves the others, and moves `updated_at` forward; it
/// only applies to the version it was checked against.
pub async fn update_changes_only_given_fields<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let before = market(fixture, &ann, "before", MarketStatus::Open, 100).await;
    let patch = MarketPatch {
        name: Some(MarketName::parse("after").unwrap()),
        volume: Some(Volume::from_cents(250).unwrap()),
        ..MarketPatch::default()
    };
    let after = fixture
        .markets()
        .update(before.id, before.version, patch, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.name.as_str(), "after");
    assert_eq!(after.volume.cents(), 250);
    assert_eq!(after.description, before.description, "description changed");
    assert_eq!(after.status, before.status, "status changed");
    assert_eq!(after.creator, before.creator);
    assert_eq!(after.created_at, before.created_at);
    assert!(
        after.updated_at >= before.updated_at,
        "updated_at went back"
    );
    let stored = fixture.markets().find_by_id(before.id).await.unwrap();
    assert_eq!(stored, Some(after.clone()));

    let status_only = MarketPatch {
        status: Some(MarketStatus::Resolved),
        ..MarketPatch::default()
    };
    let stale = fixture
        .markets()
        .update(before.id, before.version, status_only.clone(), &[])
        .await
        .unwrap();
    assert_eq!(
        stale, None,
        "a patch checked against an older version was applied"
    );
    let resolved = fixture
        .markets()
        .update(before.id, after.version, status_only, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.status, MarketStatus::Resolved);
    assert_eq!(resolved.name, after.name);
}

/// Updating or deleting a missing market is `None`/`false`; a delete is final.
pub async fn update_and_delete_report_missing_markets<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let doomed = market(fixture, &ann, "doomed", MarketStatus::Open, 0).await;
    let markets = fixture.markets();
    let patch = MarketPatch {
        status: Some(MarketStatus::Closed),
        ..MarketPatch::default()
    };
    assert_eq!(
        markets
            .update(MarketId::new(), 1, patch.clone(), &[])
            .await
            .unwrap(),
        None
    );
    assert!(
        markets.delete(doomed.id, None, None).await.unwrap(),
        "first delete"
    );
    assert!(
        !markets.delete(doomed.id, None, None).await.unwrap(),
        "second delete"
    );
    assert_eq!(markets.find_by_id(doomed.id).await.unwrap(), None);
    let gone = markets.update(doomed.id, doomed.version, patch, &[]).await;
    assert_eq!(gone.unwrap(), None);
}

/// `find_latest` sees each write as soon as it returns: the create, the update, the delete.
pub async fn the_latest_read_sees_every_committed_write<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let created = market(fixture, &ann, "latest", MarketStatus::Open, 0).await;
    let markets = fixture.markets();
    assert_eq!(
        markets.find_latest(created.id).await.unwrap().as_ref(),
        Some(&created)
    );
    let patch = MarketPatch {
        status: Some(MarketStatus::Closed),
        ..MarketPatch::default()
    };
    let updated = markets
        .update(created.id, created.version, patch, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        markets.find_latest(created.id).await.unwrap(),
        Some(updated)
    );
    assert!(markets.delete(created.id, None, None).await.unwrap());
    assert_eq!(markets.find_latest(created.id).await.unwrap(), None);
    assert_eq!(markets.find_latest(MarketId::new()).await.unwrap(), None);
}

/// A delete given a version deletes only the market at that version: a market changed since
/// stays, with its change.
pub async fn delete_checks_the_version_it_is_given<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let kept = market(fixture, &ann, "kept", MarketStatus::Open, 0).await;
    let markets = fixture.markets();
    let patch = MarketPatch {
        status: Some(MarketStatus::Closed),
        ..MarketPatch::default()
    };
    let changed = markets
        .update(kept.id, kept.version, patch, &[])
        .await
        .unwrap()
        .unwrap();
    assert!(
        !markets
            .delete(kept.id, Some(kept.version), None)
            .await
            .unwrap(),
        "a stale version deletes nothing"
    );
    assert_eq!(
        markets.find_by_id(kept.id).await.unwrap(),
        Some(changed.clone())
    );
    assert!(
        !markets
            .delete(MarketId::new(), Some(1), None)
            .await
            .unwrap(),
        "a missing market"
    );
    assert!(
        markets
            .delete(kept.id, Some(changed.version), None)
            .await
            .unwrap(),
        "the current version is deleted"
    );
    assert_eq!(markets.find_by_id(kept.id).await.unwrap(), None);
}

/// The number of markets stored.
async fn stored<F: RepositoryFixture>(fixture: &F) -> u64 {
    let page = PageRequest::new(1, PageSize::new("page_size", 100).unwrap()).unwrap();
    let all = fixture
        .markets()
        .find_all(MarketFilter::default(), MarketSort::default(), page);
    all.await.unwrap().total
}

fn key(key: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey::parse(key, fingerprint).unwrap()
}

/// The first create with a key stores the market; a repeat with the same fingerprint stores
/// nothing and gets the market as first returned, even after it changed; purging keeps a key
/// that has not expired.
pub async fn a_key_replays_its_first_create<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let markets = fixture.markets();
    let once = key("order-1", "fp-a");
    let first = new_market(&ann, "Once", MarketStatus::Open, 5);
    let Creation::Created(created) = markets.create_once(first, &[], &once).await.unwrap() else {
        panic!("the first create with a key creates");
    };
    let patch = MarketPatch {
        status: Some(MarketStatus::Closed),
        ..MarketPatch::default()
    };
    markets
        .update(created.id, created.version, patch, &[])
        .await
        .unwrap()
        .unwrap();
    let again = new_market(&ann, "Once", MarketStatus::Open, 5);
    let replayed = markets.create_once(again, &[], &once).await.unwrap();
    assert_eq!(replayed, Creation::Replayed(created.clone()));
    assert_eq!(stored(fixture).await, 1);
    assert_eq!(markets.purge_expired_keys().await.unwrap(), 0);
    let again = new_market(&ann, "Once", MarketStatus::Open, 5);
    let replayed = markets.create_once(again, &[], &once).await.unwrap();
    assert_eq!(replayed.market(), &created);
}

/// Another creator's equal key is another key; the same key with another fingerprint is
/// refused and stores nothing.
pub async fn a_key_is_its_creators_own_and_refuses_another_request<F: RepositoryFixture>(
    fixture: &F,
) {
    let ann = user(fixture, "ann").await;
    let bob = user(fixture, "bob").await;
    let markets = fixture.markets();
    let shared = key("same", "fp-a");
    let anns = new_market(&ann, "Ann's", MarketStatus::Open, 0);
    assert!(matches!(
        markets.create_once(anns, &[], &shared).await.unwrap(),
        Creation::Created(_)
    ));
    let bobs = new_market(&bob, "Bob's", MarketStatus::Open, 0);
    let Creation::Created(bobs) = markets.create_once(bobs, &[], &shared).await.unwrap() else {
        panic!("keys are per creator");
    };
    assert_eq!(bobs.creator.id, bob.id);
    let other = new_market(&ann, "Other", MarketStatus::Open, 0);
    let refused = markets.create_once(other, &[], &key("same", "fp-b")).await;
    assert!(
        matches!(refused, Err(CreateMarketError::KeyReused)),
        "{refused:?}"
    );
    assert_eq!(stored(fixture).await, 2);
}

/// Creates racing with one key store one market: each of the others is a replay of it, or is
/// told the first is still in flight.
pub async fn concurrent_creates_with_one_key_create_one_market<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let markets = fixture.markets();
    let once = key("racing", "fp");
    let attempts = (0..10).map(|_| {
        let new = new_market(&ann, "Racing", MarketStatus::Open, 0);
        let once = once.clone();
        async move { markets.create_once(new, &[], &once).await }
    });
    let outcomes = futures_util::future::join_all(attempts).await;
    let created: Vec<&Market> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Ok(Creation::Created(market)) => Some(market),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "{outcomes:?}");
    for outcome in &outcomes {
        match outcome {
            Ok(Creation::Created(_)) | Err(CreateMarketError::KeyInFlight) => {}
            Ok(Creation::Replayed(market)) => assert_eq!(market, created[0]),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(stored(fixture).await, 1);
}

/// Volumes come back to the hundredth, up to the largest allowed.
pub async fn volume_is_kept_exactly<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    for cents in [0, 1, 10, 123_456_789, Volume::MAX.cents()] {
        let stored = market(fixture, &ann, "exact", MarketStatus::Open, cents).await;
        let found = fixture
            .markets()
            .find_by_id(stored.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.volume.cents(), cents);
    }
}

/// Offset pages walk the whole list in each order, with the exact total on every page.
pub async fn offset_pages_follow_every_order<F: RepositoryFixture>(fixture: &F) {
    let markets = seed(fixture).await;
    let all = MarketFilter::default();
    for sort in SORTS {
        let sort: MarketSort = sort.parse().unwrap();
        let seen = all_offset_pages(fixture, all, sort, markets.len()).await;
        assert_eq!(
            seen,
            expected(&markets, all, sort),
            "offset pages in {sort} order"
        );
    }
}

/// Offset pages of a status hold only that status, and count only it.
pub async fn offset_pages_filter_by_status<F: RepositoryFixture>(fixture: &F) {
    let markets = seed(fixture).await;
    for status in MarketStatus::ALL {
        let filter = MarketFilter {
            status: Some(status),
        };
        let sort = MarketSort::default();
        let wanted = expected(&markets, filter, sort);
        let seen = all_offset_pages(fixture, filter, sort, wanted.len()).await;
        assert_eq!(seen, wanted, "offset pages of {status} markets");
    }
}

/// Keyset pages walk the whole list in each order and end with no next position.
pub async fn keyset_pages_follow_every_order<F: RepositoryFixture>(fixture: &F) {
    let markets = seed(fixture).await;
    let all = MarketFilter::default();
    for sort in SORTS {
        let sort: MarketSort = sort.parse().unwrap();
        let seen = all_keyset_pages(fixture, all, sort).await;
        assert_eq!(
            seen,
            expected(&markets, all, sort),
            "keyset pages in {sort} order"
        );
    }
}

/// Keyset pages of a status hold only that status.
pub async fn keyset_pages_filter_by_status<F: RepositoryFixture>(fixture: &F) {
    let markets = seed(fixture).await;
    for status in MarketStatus::ALL {
        for sort in ["-volume", "created_at"] {
            let filter = MarketFilter {
                status: Some(status),
            };
            let sort: MarketSort = sort.parse().unwrap();
            let seen = all_keyset_pages(fixture, filter, sort).await;
            assert_eq!(
                seen,
                expected(&markets, filter, sort),
                "{status} markets, {sort}"
            );
        }
    }
}

/// A market created between two keyset pages neither repeats nor hides an item of the list
/// being walked (it would with offsets).
pub async fn keyset_pages_are_stable_under_inserts<F: RepositoryFixture>(fixture: &F) {
    let markets = seed(fixture).await;
    let newest_first = MarketSort::default();
    let first = KeysetRequest::new(newest_first, None, size(3)).unwrap();
    let page_one = fixture
        .markets()
        .find_after(MarketFilter::default(), first)
        .await
        .unwrap();
    let creator = fixture
        .users()
        .find_by_id(markets[0].creator.id)
        .await
        .unwrap()
        .unwrap();
    market(fixture, &creator, "latecomer", MarketStatus::Open, 1).await;
    let second = KeysetRequest::new(newest_first, page_one.next, size(10)).unwrap();
    let page_two = fixture
        .markets()
        .find_after(MarketFilter::default(), second)
        .await
        .unwrap();
    let mut seen = page_one.items;
    seen.extend(page_two.items);
    assert_eq!(
        seen,
        expected(&markets, MarketFilter::default(), newest_first),
        "an insert between pages shifted the walk"
    );
    assert_eq!(page_two.next, None);
}

/// How many writers [`concurrent_mixed_workload`] runs at once, and how many rounds each.
const WRITERS: usize = 12;
const ROUNDS: usize = 8;

/// A mixed workload from many writers at once, as a busy service makes it: each writer creates
/// markets and moves them between statuses, and changes the status of, renames and deletes
/// markets that all writers share, so that creates, status changes, other updates and deletes
/// of the same rows meet (updates racing on a version, deletes racing on a row). The store's
/// own rows are then the truth to check its totals (or counters) against.
pub async fn concurrent_mixed_workload<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let mut shared = Vec::new();
    for n in 0..WRITERS {
        let status = MarketStatus::ALL[n % 3];
        shared.push(
            market(fixture, &ann, &format!("shared {n}"), status, 0)
                .await
                .id,
        );
    }
    let writers = (0..WRITERS).map(|writer| {
        let (ann, shared) = (&ann, &shared);
        async move {
            let mut own = Vec::new();
            for round in 0..ROUNDS {
                let status = MarketStatus::ALL[(writer + round) % 3];
                let name = format!("writer {writer} round {round}");
                own.push(market(fixture, ann, &name, status, 0).await);
                let target = shared[(writer * 5 + round) % shared.len()];
                let next = MarketStatus::ALL[(writer + round + 1) % 3];
                match round % 4 {
                    0 => set_status(fixture, target, next).await,
                    1 => set_status(fixture, own[round].id, next).await,
                    2 => rename(fixture, target, &name).await,
                    _ => {
                        fixture.markets().delete(target, None, None).await.unwrap();
                        fixture
                            .markets()
                            .delete(own[round - 1].id, None, None)
                            .await
                            .unwrap();
                    }
                }
            }
        }
    });
    join_all(writers).await;
}

/// Sets the status of the market `id`, if it still exists at the version just read (a
/// concurrent change wins otherwise, as it would for a caller).
async fn set_status<F: RepositoryFixture>(fixture: &F, id: MarketId, status: MarketStatus) {
    let patch = MarketPatch {
        status: Some(status),
        ..MarketPatch::default()
    };
    update_if_found(fixture, id, patch).await;
}

/// Renames the market `id` (an update that leaves its status), as [`set_status`] does.
async fn rename<F: RepositoryFixture>(fixture: &F, id: MarketId, name: &str) {
    let patch = MarketPatch {
        name: Some(MarketName::parse(name).unwrap()),
        ..MarketPatch::default()
    };
    update_if_found(fixture, id, patch).await;
}

async fn update_if_found<F: RepositoryFixture>(fixture: &F, id: MarketId, patch: MarketPatch) {
    let markets = fixture.markets();
    if let Some(current) = markets.find_by_id(id).await.unwrap() {
        markets
            .update(id, current.version, patch, &[])
            .await
            .unwrap();
    }
}

/// How many markets of each status (in [`MarketStatus::ALL`]'s order) the store holds, read
/// from the markets themselves by walking every keyset page.
async fn held_by_status<F: RepositoryFixture>(fixture: &F) -> [u64; 3] {
    let mut held = [0; 3];
    let mut after = None;
    loop {
        let request = KeysetRequest::new(MarketSort::default(), after, size(100)).unwrap();
        let page = fixture
            .markets()
            .find_after(MarketFilter::default(), request)
            .await
            .unwrap();
        for market in &page.items {
            let index = MarketStatus::ALL.iter().position(|s| *s == market.status);
            held[index.unwrap()] += 1;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return held,
        }
    }
}

/// After many writers created, re-statused, updated and deleted markets at once, every list's
/// total (all markets, and each status) equals the markets the store holds.
pub async fn totals_stay_exact_under_concurrent_writes<F: RepositoryFixture>(fixture: &F) {
    concurrent_mixed_workload(fixture).await;
    let held = held_by_status(fixture).await;
    let created = (WRITERS * (ROUNDS + 1)) as u64;
    let all: u64 = held.iter().sum();
    assert!(
        0 < all && all < created,
        "the workload creates {created} markets and deletes some; {all} are left"
    );
    let first = PageRequest::new(1, size(1)).unwrap();
    let total = |status| async move {
        let filter = MarketFilter { status };
        let page = fixture
            .markets()
            .find_all(filter, MarketSort::default(), first);
        page.await.unwrap().total
    };
    assert_eq!(total(None).await, all, "total of all markets");
    for (status, held) in MarketStatus::ALL.into_iter().zip(held) {
        assert_eq!(total(Some(status)).await, held, "total of {status} markets");
    }
}

/// Text search finds markets containing every query word, name matches before description
/// matches, with scores in `0..=1`, at most `limit`.
pub async fn text_search_ranks_name_matches_first<F: RepositoryFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let described = |name: &str, description: &str| {
        let mut new = new_market(&ann, name, MarketStatus::Open, 0);
        new.description = Description::parse(description).unwrap();
        new
    };
    let in_name = described("Will it rain tomorrow", "A weather question.");
    let in_description = described("Bitcoin above 100k", "Crypto, or a rain of money?");
    let unrelated = described("Election winner", "Politics.");
    for new in [&in_name, &in_description, &unrelated] {
        fixture.markets().create(new.clone(), &[]).await.unwrap();
    }
    let search = |query: &str, limit: u32| {
        let query = SearchQuery::parse(query).unwrap();
        let limit = SearchLimit::new(limit).unwrap();
        async move { fixture.markets().search_text(&query, limit).await.unwrap() }
    };

    let hits = search("rain", 10).await;
    let ids: Vec<MarketId> = hits.iter().map(|hit| hit.market.id).collect();
    assert_eq!(ids, vec![in_name.id, in_description.id], "name match first");
    assert!(
        hits.iter().all(|hit| hit.score > 0.0 && hit.score <= 1.0),
        "{hits:?}"
    );
    assert!(hits[0].score > hits[1].score, "{hits:?}");
    assert_eq!(hits[0].market.creator.id, ann.id);

    let narrowed = search("rain weather", 10).await;
    assert_eq!(narrowed.len(), 1, "every word must match");
    assert_eq!(narrowed[0].market.id, in_name.id);
    assert_eq!(search("rain", 1).await.len(), 1, "limit");
    assert!(search("zebra", 10).await.is_empty());
}
