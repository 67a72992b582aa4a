//! In-memory fakes of the ports, for unit tests of services here and in dependent crates.
//! Enabled by the `testing` feature; the fakes pass the same contract suites as real adapters.

use async_trait::async_trait;
use chrono::Utc;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::auth::{HashError, Password, PasswordHash, PasswordHasher};
use crate::error::RepositoryError;
use crate::market::{
    CreateMarketError, Creator, KeysetPage, KeysetPosition, KeysetRequest, Market, MarketFilter,
    MarketId, MarketPatch, MarketRepository, MarketSort, MarketSummary, NewMarket, Page,
    PageRequest, SortField, SortKey,
};
use crate::permission::Role;
use crate::user::{CreateUserError, Email, NewUser, User, UserAccount, UserId, UserRepository};

#[derive(Debug, Default)]
struct State {
    users: HashMap<UserId, UserAccount>,
    markets: HashMap<MarketId, Market>,
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

#[async_trait]
impl MarketRepository for InMemoryStore {
    async fn create(&self, new: NewMarket) -> Result<Market, CreateMarketError> {
        let mut state = self.state();
        let creator = state
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
        };
        state.markets.insert(market.id, market.clone());
        Ok(market)
    }

    async fn find_by_id(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        Ok(self.state().markets.get(&id).cloned())
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
        patch: MarketPatch,
    ) -> Result<Option<Market>, RepositoryError> {
        let mut state = self.state();
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
        Ok(Some(market.clone()))
    }

    async fn delete(&self, id: MarketId) -> Result<bool, RepositoryError> {
        Ok(self.state().markets.remove(&id).is_some())
    }
}

#[async_trait]
impl UserRepository for InMemoryStore {
    async fn create(&self, new: NewUser) -> Result<User, CreateUserError> {
        let mut state = self.state();
        if state.users.values().any(|a| a.user.email == new.email) {
            return Err(CreateUserError::EmailTaken);
        }
        let user = User {
            id: new.id,
            email: new.email,
            display_name: new.display_name,
            role: new.role,
            created_at: Utc::now(),
        };
        let account = UserAccount {
            user: user.clone(),
            password_hash: new.password_hash,
        };
        state.users.insert(user.id, account);
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

    async fn update_role(&self, id: UserId, role: Role) -> Result<Option<User>, RepositoryError> {
        let mut state = self.state();
        Ok(state.users.get_mut(&id).map(|account| {
            account.user.role = role;
            account.user.clone()
        }))
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
