//! In-memory fakes of the ports, for unit tests of services here and in dependent crates.
//! Enabled by the `testing` feature; the fakes pass the same contract suites as real adapters.
//!
//! [`InMemoryStore`] is every storage port at once (markets, users, the audit trail and the job
//! outbox, in [`jobs`]), so a test sees what one write stored across all of them.

mod jobs;
mod ratelimit;

pub use jobs::{Clock, RecordingNotifier};
pub use ratelimit::BudgetLimiter;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::audit::{AuditEvent, AuditEventId, AuditLog, AuditPage};
use crate::auth::{
    AccessToken, HashError, NewAccountToken, Password, PasswordHash, PasswordHasher, TokenClaims,
    TokenError, TokenHash, TokenIssuer, TokenPurpose,
};
use crate::cache::{Cache, CacheError};
use crate::error::RepositoryError;
use crate::jobs::{JobKind, NewJob};
use crate::market::{
    CreateMarketError, Creation, Creator, IdempotencyKey, KeysetPage, KeysetPosition,
    KeysetRequest, Market, MarketFilter, MarketId, MarketPatch, MarketRepository, MarketSort,
    MarketSummary, NewMarket, Page, PageRequest, PageSize, ScoredSummary, SearchLimit, SearchQuery,
    SortField, SortKey,
};
use crate::permission::Role;
use crate::user::{
    CreateUserError, Email, NewUser, RoleChange, UpdateRoleError, User, UserAccount, UserId,
    UserRepository,
};
use jobs::{QueuedJob, StoreClock};

#[derive(Debug, Default)]
struct State {
    users: HashMap<UserId, UserAccount>,
    markets: HashMap<MarketId, Market>,
    jobs: Vec<QueuedJob>,
    /// When each completed job of each kind completed, until pruned.
    completions: Vec<(JobKind, DateTime<Utc>)>,
    /// What the job queue tells the time by.
    clock: StoreClock,
    audit: Vec<AuditEvent>,
    /// The tallied events' rows, by tally key.
    tallies: HashMap<String, AuditEventId>,
    /// Idempotency keys by creator and key: the fingerprint, the market as returned, and when.
    keys: HashMap<(UserId, String), StoredKey>,
    /// Every job queue call fails as unavailable, like a database that is down.
    jobs_down: bool,
    /// Single-use tokens, with whether each was used.
    tokens: Vec<(NewAccountToken, bool)>,
}

/// An idempotency key's record.
#[derive(Debug, Clone)]
struct StoredKey {
    fingerprint: String,
    market: Market,
    at: chrono::DateTime<Utc>,
}

fn key_lifetime() -> chrono::Duration {
    chrono::Duration::from_std(IdempotencyKey::LIFETIME).unwrap_or(chrono::Duration::MAX)
}

/// A market and user store in memory; clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct InMemoryStore {
    state: Arc<Mutex<State>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many idempotency keys the store holds, expired or not.
    pub fn idempotency_keys(&self) -> usize {
        self.state().keys.len()
    }

    /// Makes every idempotency key `by` older, as if that time had passed.
    pub fn age_keys(&self, by: chrono::Duration) {
        for key in self.state().keys.values_mut() {
            key.at -= by;
        }
    }

    /// The jobs scheduled so far, in order.
    pub fn jobs(&self) -> Vec<NewJob> {
        self.state().jobs.iter().map(|queued| queued.job).collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave `State` half-updated: every write is one insert/remove.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn sort_key(market: &MarketSummary, field: SortField) -> SortKey {
    KeysetPosition::of(market, field).key
}

fn compare_keys(a: &SortKey, b: &SortKey) -> Ordering {
    match (a, b) {
        (SortKey::CreatedAt(a), SortKey::CreatedAt(b)) => a.cmp(b),
        (SortKey::Volume(a), SortKey::Volume(b)) => a.cmp(b),
        (a, b) => format!("{:?}", a.field()).cmp(&format!("{:?}", b.field())),
    }
}

fn compare(a: &MarketSummary, b: &MarketSummary, sort: MarketSort) -> Ordering {
    let ascending = compare_keys(&sort_key(a, sort.field), &sort_key(b, sort.field))
        .then_with(|| a.id.cmp(&b.id));
    if sort.descending {
        ascending.reverse()
    } else {
        ascending
    }
}

fn is_after(market: &MarketSummary, position: &KeysetPosition, sort: MarketSort) -> bool {
    let ascending = compare_keys(&sort_key(market, sort.field), &position.key)
        .then_with(|| market.id.cmp(&position.id));
    let wanted = if sort.descending {
        Ordering::Less
    } else {
        Ordering::Greater
    };
    ascending == wanted
}

impl InMemoryStore {
    fn sorted(&self, filter: MarketFilter, sort: MarketSort) -> Vec<MarketSummary> {
        let mut summaries: Vec<MarketSummary> = self
            .state()
            .markets
            .values()
            .filter(|market| filter.status.is_none_or(|status| market.status == status))
            .cloned()
            .map(MarketSummary::from)
            .collect();
        summaries.sort_by(|a, b| compare(a, b, sort));
        summaries
    }
}

impl State {
    /// Queues `job`, due now.
    fn queue(&mut self, job: NewJob) {
        let due = self.clock.now();
        self.jobs.push(QueuedJob::new(job, due));
    }

    /// Consumes the unused, unexpired `purpose` token with hash `token` and the user's other
    /// tokens of that purpose; the user's account, if the token was good.
    fn consume(
        &mut self,
        purpose: TokenPurpose,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Option<&mut UserAccount> {
        let user_id = self
            .tokens
            .iter()
            .find(|(t, used)| {
                !used && t.purpose == purpose && &t.hash == token && t.expires_at > now
            })
            .map(|(t, _)| t.user_id)?;
        for (t, used) in &mut self.tokens {
            *used |= t.user_id == user_id && t.purpose == purpose;
        }
        self.users.get_mut(&user_id)
    }

    fn create(&mut self, new: NewMarket, jobs: &[NewJob]) -> Result<Market, CreateMarketError> {
        let creator = self
            .users
            .get(&new.creator_id)
            .map(|account| Creator {
                id: account.user.id,
                display_name: account.user.display_name.clone(),
            })
            .ok_or(CreateMarketError::UnknownCreator(new.creator_id))?;
        let now = Utc::now();
        let market = Market {
            id: new.id,
            name: new.name,
            description: new.description,
            status: new.status,
            volume: new.volume,
            creator,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        self.markets.insert(market.id, market.clone());
        jobs.iter().for_each(|job| self.queue(*job));
        Ok(market)
    }
}

#[async_trait]
impl MarketRepository for InMemoryStore {
    async fn create(&self, new: NewMarket, jobs: &[NewJob]) -> Result<Market, CreateMarketError> {
        self.state().create(new, jobs)
    }

    /// One lock for the check and the create: a store that runs one write at a time.
    async fn create_once(
        &self,
        new: NewMarket,
        jobs: &[NewJob],
        key: &IdempotencyKey,
    ) -> Result<Creation, CreateMarketError> {
        let mut state = self.state();
        let slot = (new.creator_id, key.as_str().to_owned());
        let now = Utc::now();
        if let Some(stored) = state
            .keys
            .get(&slot)
            .filter(|k| now - k.at < key_lifetime())
        {
            return if stored.fingerprint == key.fingerprint() {
                Ok(Creation::Replayed(stored.market.clone()))
            } else {
                Err(CreateMarketError::KeyReused)
            };
        }
        let market = state.create(new, jobs)?;
        let stored = StoredKey {
            fingerprint: key.fingerprint().to_owned(),
            market: market.clone(),
            at: now,
        };
        state.keys.insert(slot, stored);
        Ok(Creation::Created(market))
    }

    async fn purge_expired_keys(&self) -> Result<u64, RepositoryError> {
        let mut state = self.state();
        let before = state.keys.len();
        let now = Utc::now();
        state.keys.retain(|_, key| now - key.at < key_lifetime());
        Ok((before - state.keys.len()) as u64)
    }

    async fn find_by_id(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        Ok(self.state().markets.get(&id).cloned())
    }

    async fn find_latest(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        MarketRepository::find_by_id(self, id).await
    }

    async fn find_by_ids(&self, ids: &[MarketId]) -> Result<Vec<Market>, RepositoryError> {
        let state = self.state();
        let mut found: Vec<Market> = ids
            .iter()
            .filter_map(|id| state.markets.get(id).cloned())
            .collect();
        found.sort_by_key(|market| market.id);
        found.dedup_by_key(|market| market.id);
        Ok(found)
    }

    async fn find_all(
        &self,
        filter: MarketFilter,
        sort: MarketSort,
        page: PageRequest,
    ) -> Result<Page<MarketSummary>, RepositoryError> {
        let all = self.sorted(filter, sort);
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(page.offset()).unwrap_or(usize::MAX))
            .take(page.size().get() as usize)
            .collect();
        Ok(Page {
            items,
            request: page,
            total,
        })
    }

    async fn find_after(
        &self,
        filter: MarketFilter,
        request: KeysetRequest,
    ) -> Result<KeysetPage<MarketSummary>, RepositoryError> {
        let sort = request.sort();
        let lookahead = request.limit().get() as usize + 1;
        let items = self
            .sorted(filter, sort)
            .into_iter()
            .filter(|market| {
                request
                    .after()
                    .is_none_or(|after| is_after(market, &after, sort))
            })
            .take(lookahead)
            .collect();
        Ok(KeysetPage::from_lookahead(items, &request))
    }

    async fn update(
        &self,
        id: MarketId,
        expected_version: u64,
        patch: MarketPatch,
        jobs: &[NewJob],
    ) -> Result<Option<Market>, RepositoryError> {
        let mut state = self.state();
        let current = state.markets.get(&id).map(|market| market.version);
        if current != Some(expected_version) {
            return Ok(None);
        }
        let now = state.clock.now();
        state
            .jobs
            .extend(jobs.iter().map(|job| QueuedJob::new(*job, now)));
        let Some(market) = state.markets.get_mut(&id) else {
            return Ok(None);
        };
        market.name = patch.name.unwrap_or_else(|| market.name.clone());
        market.description = patch
            .description
            .unwrap_or_else(|| market.description.clone());
        market.status = patch.status.unwrap_or(market.status);
        market.volume = patch.volume.unwrap_or(market.volume);
        market.updated_at = Utc::now();
        market.version += 1;
        Ok(Some(market.clone()))
    }

    async fn delete(
        &self,
        id: MarketId,
        expected_version: Option<u64>,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, RepositoryError> {
        let mut state = self.state();
        let current = state.markets.get(&id).map(|market| market.version);
        if current.is_none() || expected_version.is_some_and(|v| current != Some(v)) {
            return Ok(false);
        }
        let deleted = state.markets.remove(&id).is_some();
        if deleted {
            state.audit.extend(audit.cloned());
        }
        Ok(deleted)
    }

    /// Every query word must appear as a word of the name (worth 1) or the description
    /// (worth 0.4, like PostgreSQL's default weights); no stemming.
    async fn search_text(
        &self,
        query: &SearchQuery,
        limit: SearchLimit,
    ) -> Result<Vec<ScoredSummary>, RepositoryError> {
        let wanted = words(query.as_str());
        let mut hits: Vec<ScoredSummary> = self
            .state()
            .markets
            .values()
            .filter_map(|market| {
                let (name, description) = (
                    words(market.name.as_str()),
                    words(market.description.as_str()),
                );
                let weights = wanted.iter().map(|word| {
                    if name.contains(word) {
                        Some(1.0)
                    } else if description.contains(word) {
                        Some(0.4)
                    } else {
                        None
                    }
                });
                let total: f32 = weights.sum::<Option<f32>>().filter(|total| *total > 0.0)?;
                let score = total / (wanted.len() as f32 + 1.0);
                Some(ScoredSummary {
                    market: MarketSummary::from(market.clone()),
                    score,
                })
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.market.id.cmp(&b.market.id))
        });
        hits.truncate(limit.get() as usize);
        Ok(hits)
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[async_trait]
impl UserRepository for InMemoryStore {
    async fn create(&self, new: NewUser) -> Result<User, CreateUserError> {
        let mut state = self.state();
        if state.users.values().any(|a| a.user.email == new.email) {
            return Err(CreateUserError::EmailTaken);
        }
        let jobs = new.jobs();
        let user = User {
            id: new.id,
            email: new.email,
            display_name: new.display_name,
            role: new.role,
            created_at: Utc::now(),
            token_epoch: 0,
            email_verified: new.email_verified,
        };
        let account = UserAccount {
            user: user.clone(),
            password_hash: new.password_hash,
        };
        state.users.insert(user.id, account);
        jobs.into_iter().for_each(|job| state.queue(job));
        Ok(user)
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        Ok(self.state().users.get(&id).map(|a| a.user.clone()))
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<UserAccount>, RepositoryError> {
        let state = self.state();
        Ok(state
            .users
            .values()
            .find(|a| &a.user.email == email)
            .cloned())
    }

    async fn find_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, RepositoryError> {
        let state = self.state();
        let mut found: Vec<User> = ids
            .iter()
            .filter_map(|id| state.users.get(id).map(|a| a.user.clone()))
            .collect();
        found.sort_by_key(|user| user.id);
        found.dedup_by_key(|user| user.id);
        Ok(found)
    }

    async fn update_role(
        &self,
        id: UserId,
        role: Role,
        audit: Option<&AuditEvent>,
    ) -> Result<Option<RoleChange>, UpdateRoleError> {
        let mut state = self.state();
        let others_admin = state
            .users
            .values()
            .any(|a| a.user.id != id && a.user.role == Role::Admin);
        let demotes = state
            .users
            .get(&id)
            .is_some_and(|a| a.user.role == Role::Admin && role != Role::Admin);
        if demotes && !others_admin {
            return Err(UpdateRoleError::LastAdmin);
        }
        let changed = state.users.get_mut(&id).map(|account| {
            let previous = std::mem::replace(&mut account.user.role, role);
            RoleChange {
                user: account.user.clone(),
                previous,
            }
        });
        if let (Some(change), Some(event)) = (&changed, audit) {
            state.audit.push(event.with_previous_role(change.previous));
        }
        Ok(changed)
    }

    async fn has_role(&self, role: Role) -> Result<bool, RepositoryError> {
        Ok(self.state().users.values().any(|a| a.user.role == role))
    }

    async fn store_token(&self, token: &NewAccountToken) -> Result<(), RepositoryError> {
        self.state().tokens.push((token.clone(), false));
        Ok(())
    }

    async fn request_password_reset(&self, email: &Email) -> Result<(), RepositoryError> {
        let mut state = self.state();
        let found = state.users.values().find(|a| &a.user.email == email);
        if let Some(id) = found.map(|account| account.user.id) {
            state.queue(NewJob::for_user(JobKind::SendPasswordReset, id));
        }
        Ok(())
    }

    async fn verify_email(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepositoryError> {
        let mut state = self.state();
        let Some(account) = state.consume(TokenPurpose::EmailVerification, token, now) else {
            return Ok(None);
        };
        account.user.email_verified = true;
        Ok(Some(account.user.clone()))
    }

    async fn reset_password(
        &self,
        token: &TokenHash,
        password: &PasswordHash,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepositoryError> {
        let mut state = self.state();
        let Some(account) = state.consume(TokenPurpose::PasswordReset, token, now) else {
            return Ok(None);
        };
        account.password_hash = password.clone();
        account.user.token_epoch += 1;
        account.user.email_verified = true;
        Ok(Some(account.user.clone()))
    }
}

/// The audit trail beside the markets and users, so role changes and deletions record their
/// event atomically, as the real stores do.
#[async_trait]
impl AuditLog for InMemoryStore {
    async fn append(&self, event: &AuditEvent) -> Result<(), RepositoryError> {
        self.state().audit.push(event.clone());
        Ok(())
    }

    async fn tally(&self, event: &AuditEvent, count: u64) -> Result<(), RepositoryError> {
        let mut state = self.state();
        let key = event.tally_key();
        let row = state.tallies.get(&key).copied();
        if let Some(row) = state.audit.iter_mut().find(|e| Some(e.id) == row) {
            let total = row.count().unwrap_or_default() + count;
            *row = row.counted(total);
        } else {
            state.audit.push(event.counted(count));
            state.tallies.insert(key, event.id);
        }
        Ok(())
    }

    async fn page(
        &self,
        before: Option<AuditEventId>,
        limit: PageSize,
    ) -> Result<AuditPage, RepositoryError> {
        let mut events: Vec<AuditEvent> = self
            .state()
            .audit
            .iter()
            .filter(|event| before.is_none_or(|before| event.id < before))
            .cloned()
            .collect();
        events.sort_by_key(|event| std::cmp::Reverse(event.id));
        events.truncate(AuditPage::lookahead(limit) as usize);
        Ok(AuditPage::from_lookahead(events, limit))
    }

    async fn purge_older_than(
        &self,
        cutoff: chrono::DateTime<Utc>,
    ) -> Result<u64, RepositoryError> {
        let mut state = self.state();
        let before = state.audit.len();
        state.audit.retain(|event| event.at >= cutoff);
        let kept: HashSet<AuditEventId> = state.audit.iter().map(|event| event.id).collect();
        state.tallies.retain(|_, id| kept.contains(id));
        Ok((before - state.audit.len()) as u64)
    }
}

/// A fast, insecure hasher for tests: the "hash" is the password behind a marker.
#[derive(Debug, Clone)]
pub struct PlaintextHasher {
    dummy: PasswordHash,
}

impl Default for PlaintextHasher {
    fn default() -> Self {
        Self {
            dummy: PasswordHash::new("plain$"),
        }
    }
}

#[async_trait]
impl PasswordHasher for PlaintextHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        Ok(PasswordHash::new(format!("plain${}", password.expose())))
    }

    async fn verify(&self, candidate: &str, hash: &PasswordHash) -> Result<bool, HashError> {
        Ok(hash.as_str().strip_prefix("plain$") == Some(candidate) && hash != &self.dummy)
    }

    fn dummy_hash(&self) -> &PasswordHash {
        &self.dummy
    }
}

/// Unsigned tokens for tests: `user-id:role:jti`, never expiring. Not for production.
#[derive(Debug, Clone, Default)]
pub struct FakeTokens;

impl TokenIssuer for FakeTokens {
    fn issue(&self, user: &User) -> Result<AccessToken, TokenError> {
        let token = format!(
            "{}:{}:{}:{}",
            user.id,
            user.role,
            user.token_epoch,
            UserId::new()
        );
        Ok(AccessToken {
            token,
            expires_in: 1800,
        })
    }

    fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let mut parts = token.split(':');
        let (Some(id), Some(role), Some(epoch), Some(jti), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let now = Utc::now();
        Ok(TokenClaims {
            user_id: id.parse().map_err(|_| TokenError::Malformed)?,
            role: role.parse().map_err(|_| TokenError::Malformed)?,
            token_id: jti.to_owned(),
            epoch: epoch.parse().map_err(|_| TokenError::Malformed)?,
            issued_at: now,
            expires_at: now + chrono::Duration::minutes(30),
        })
    }
}

/// What an in-memory cache slot holds.
#[derive(Debug, Clone)]
enum Slot {
    Entry(Market),
    Removed,
}

/// A cache in memory with the port's versioning rules and no expiry; clones share entries.
#[derive(Debug, Clone, Default)]
pub struct InMemoryCache {
    slots: Arc<Mutex<HashMap<MarketId, Slot>>>,
    writes_fail: Arc<AtomicBool>,
}

impl InMemoryCache {
    fn slots(&self) -> MutexGuard<'_, HashMap<MarketId, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets everything, removal guards included (as if every entry had expired).
    pub fn clear(&self) {
        self.slots().clear();
    }

    /// Makes puts and removals fail (or succeed again) while reads still answer with what is
    /// held: a cache that this writer cannot reach but readers can.
    pub fn set_writes_failing(&self, failing: bool) {
        self.writes_fail
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// An error if writes are failing.
    fn writable(&self) -> Result<(), CacheError> {
        if self.writes_fail.load(std::sync::atomic::Ordering::SeqCst) {
            Err(CacheError("writes are failing".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Cache for InMemoryCache {
    async fn get(&self, id: MarketId) -> Result<Option<Market>, CacheError> {
        Ok(match self.slots().get(&id) {
            Some(Slot::Entry(market)) => Some(market.clone()),
            Some(Slot::Removed) | None => None,
        })
    }

    async fn put(&self, markets: &[Market]) -> Result<(), CacheError> {
        self.writable()?;
        let mut slots = self.slots();
        for market in markets {
            let newer_held = match slots.get(&market.id) {
                Some(Slot::Entry(held)) => held.version >= market.version,
                Some(Slot::Removed) => true,
                None => false,
            };
            if !newer_held {
                slots.insert(market.id, Slot::Entry(market.clone()));
            }
        }
        Ok(())
    }

    async fn remove(&self, id: MarketId) -> Result<(), CacheError> {
        self.writable()?;
        self.slots().insert(id, Slot::Removed);
        Ok(())
    }
}

/// Revocations in memory; clones share them.
#[derive(Debug, Clone, Default)]
pub struct InMemoryRevocations {
    revoked: Arc<Mutex<HashMap<String, chrono::DateTime<Utc>>>>,
}

#[async_trait]
impl crate::auth::TokenRevocations for InMemoryRevocations {
    async fn revoke(
        &self,
        token_id: &str,
        expires_at: chrono::DateTime<Utc>,
    ) -> Result<(), RepositoryError> {
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        revoked.insert(token_id.to_owned(), expires_at);
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool, RepositoryError> {
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        Ok(revoked
            .get(token_id)
            .is_some_and(|until| *until > Utc::now()))
    }

    async fn active(&self) -> Result<Vec<(String, chrono::DateTime<Utc>)>, RepositoryError> {
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        let now = Utc::now();
        Ok(revoked
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(id, until)| (id.clone(), *until))
            .collect())
    }
}
