//! The market use cases: who may create, change and delete markets, and on which rules.

use super::idempotency::{Creation, IdempotencyKey};
use super::model::{Market, MarketDraft, MarketPatch, MarketSummary, NewMarket, Precondition};
use super::query::{KeysetPage, KeysetRequest, MarketFilter, MarketSort, SortField};
use super::repository::{CreateMarketError, MarketRepository};
use super::values::{MarketId, MarketStatus};
use crate::audit::AuditEvent;
use crate::cache::{Cache, CacheStatus, Fence};
use crate::error::{RepositoryError, ValidationError};
use crate::jobs::{JobKind, NewJob};
use crate::paging::{Page, PageRequest, PageSize};
use crate::permission::{Actor, Permission};
use crate::user::UserId;

/// Why a market use case failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarketError {
    /// No market has this id.
    #[error("Market with id {0} not found")]
    NotFound(MarketId),
    /// The caller is anonymous but the use case needs a user.
    #[error("authentication required")]
    Unauthenticated,
    /// The caller lacks the permission, or does not own the market.
    #[error("missing permission: {0:?}")]
    PermissionDenied(Permission),
    /// The market is resolved and can no longer change.
    #[error("Market with id {0} is resolved and can no longer be changed")]
    Resolved(MarketId),
    /// The market is not at a version the caller's [`Precondition`] allows: it changed since
    /// the caller read it. Nothing was changed.
    #[error("Market with id {0} has changed since the version given")]
    PreconditionFailed(MarketId),
    /// The market changed under every one of the update's attempts to apply its patch to the
    /// version it had checked (optimistic concurrency lost, again and again): the caller may
    /// retry. Not a failure of the store.
    #[error("Market with id {0} kept changing under this update; retry")]
    Contended(MarketId),
    /// The caller's idempotency key was used before with another request.
    #[error("This Idempotency-Key was used with another request body")]
    KeyReused,
    /// The first request with the caller's idempotency key is still being carried out.
    #[error("A request with this Idempotency-Key is still in progress; retry shortly")]
    KeyInFlight,
    /// The input breaks a rule that its types cannot express (e.g. an empty patch).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The store failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Applies the market rules on top of a [`MarketRepository`], with a [`Cache`] in front of
/// single-market reads: cache-aside on reads, write-through on create and update, removal on
/// delete. Cache failures never fail a use case: they count as misses and skipped writes, and a
/// change the cache could not take is fenced ([`Cache::committed`]) before the use case answers.
#[derive(Debug, Clone)]
pub struct MarketService<M, C> {
    markets: M,
    cache: C,
}

impl<M: MarketRepository, C: Cache> MarketService<M, C> {
    /// Builds the service on its repository and cache (`NoCache` for none).
    pub fn new(markets: M, cache: C) -> Self {
        Self { markets, cache }
    }

    /// Best-effort cache write: the adapter reports its own failures.
    async fn cache_put(&self, markets: &[Market]) {
        let _ = self.cache.put(markets).await;
    }

    /// Creates a market owned by the caller; needs [`Permission::Write`]. Schedules, in the
    /// same transaction, the creator's notification and the market's embedding.
    pub async fn create(&self, actor: &Actor, draft: MarketDraft) -> Result<Market, MarketError> {
        let creator_id = require(actor, Permission::Write)?;
        let (new, jobs) = Self::creation(creator_id, draft);
        let market = self
            .markets
            .create(new, &jobs)
            .await
            .map_err(create_error)?;
        self.cache_put(std::slice::from_ref(&market)).await;
        Ok(market)
    }

    /// [`MarketService::create`] under the caller's idempotency `key`: a repeat of the same
    /// request within a day creates nothing (no market, notification or embedding) and returns
    /// what the first one did.
    pub async fn create_once(
        &self,
        actor: &Actor,
        draft: MarketDraft,
        key: &IdempotencyKey,
    ) -> Result<Creation, MarketError> {
        let creator_id = require(actor, Permission::Write)?;
        let (new, jobs) = Self::creation(creator_id, draft);
        let creation = self
            .markets
            .create_once(new, &jobs, key)
            .await
            .map_err(create_error)?;
        if let Creation::Created(market) = &creation {
            self.cache_put(std::slice::from_ref(market)).await;
        }
        Ok(creation)
    }

    /// The market `draft` describes for `creator_id`, and the jobs its creation schedules.
    fn creation(creator_id: UserId, draft: MarketDraft) -> (NewMarket, [NewJob; 2]) {
        let new = NewMarket {
            id: MarketId::new(),
            creator_id,
            name: draft.name,
            description: draft.description,
            status: draft.status,
            volume: draft.volume,
        };
        let id = new.id;
        let jobs = [
            NewJob::new(JobKind::NotifyMarketCreated, id),
            NewJob::new(JobKind::IndexMarketEmbedding, id),
        ];
        (new, jobs)
    }

    /// The market with this id, from the cache if it has it (cache-aside).
    pub async fn get(&self, id: MarketId) -> Result<(Market, CacheStatus), MarketError> {
        match self.cache.get(id).await {
            Ok(Some(market)) => Ok((market, CacheStatus::Hit)),
            Ok(None) => {
                let market = self.load(id).await?;
                self.cache_put(std::slice::from_ref(&market)).await;
                Ok((market, CacheStatus::Miss))
            }
            // The cache is down: do not wait on it a second time for the write-back.
            Err(_) => Ok((self.load(id).await?, CacheStatus::Miss)),
        }
    }

    /// The market with this id, from the repository. A read that another instance's change
    /// has overtaken (it was shared with one that started before that commit, or it came from
    /// a replica that has not replayed the change yet) is read again, latest.
    async fn load(&self, id: MarketId) -> Result<Market, MarketError> {
        let market = match self.markets.find_by_id(id).await? {
            Some(market) if !self.cache.admits(&market) => self.markets.find_latest(id).await?,
            found => found,
        };
        market.ok_or(MarketError::NotFound(id))
    }

    /// The market with this id as the latest write left it: what a write's rules are checked
    /// against.
    async fn latest(&self, id: MarketId) -> Result<Market, MarketError> {
        let market = self.markets.find_latest(id).await?;
        market.ok_or(MarketError::NotFound(id))
    }

    /// Loads the `count` markets with the most volume into the cache, with one repository
    /// query for the ids, one for the markets and one cache round trip. Returns how many.
    pub async fn warm_cache(&self, count: PageSize) -> Result<usize, MarketError> {
        let by_volume = MarketSort {
            field: SortField::Volume,
            descending: true,
        };
        let request = KeysetRequest::new(by_volume, None, count)?;
        let top = self
            .markets
            .find_after(MarketFilter::default(), request)
            .await?;
        let ids: Vec<MarketId> = top.items.iter().map(|market| market.id).collect();
        let markets = self.markets.find_by_ids(&ids).await?;
        self.cache
            .put(&markets)
            .await
            .map_err(|error| RepositoryError::unavailable("cache", error))?;
        Ok(markets.len())
    }

    /// One offset page of markets.
    pub async fn list(
        &self,
        filter: MarketFilter,
        sort: MarketSort,
        page: PageRequest,
    ) -> Result<Page<MarketSummary>, MarketError> {
        Ok(self.markets.find_all(filter, sort, page).await?)
    }

    /// One keyset page of markets.
    pub async fn list_after(
        &self,
        filter: MarketFilter,
        request: KeysetRequest,
    ) -> Result<KeysetPage<MarketSummary>, MarketError> {
        Ok(self.markets.find_after(filter, request).await?)
    }

    /// Changes a market, if it is at a version `precondition` allows. The creator may change it
    /// with [`Permission::Write`]; anyone else needs [`Permission::Delete`]. Ownership is
    /// checked before the resolved rule and the precondition, so a stranger learns nothing
    /// about the market's state.
    pub async fn update(
        &self,
        actor: &Actor,
        id: MarketId,
        patch: MarketPatch,
        precondition: &Precondition,
    ) -> Result<Market, MarketError> {
        let user_id = require(actor, Permission::Write)?;
        if patch.is_empty() {
            return Err(ValidationError::new("body", "must change at least one field").into());
        }
        // New words need a new embedding; a new volume or status does not.
        let reindex = patch.name.is_some() || patch.description.is_some();
        let jobs: &[NewJob] = if reindex {
            &[NewJob::new(JobKind::IndexMarketEmbedding, id)]
        } else {
            &[]
        };
        let change = Change {
            patch,
            jobs,
            precondition,
        };
        let updated = self.update_checked(actor, user_id, id, change).await?;
        // Write-through: the new version replaces the old entry; if that fails the entry must
        // not outlive the change, so remove it, and if that fails too, the fence must hold.
        let taken = self.cache.put(std::slice::from_ref(&updated)).await.is_ok()
            || self.cache.remove(id).await.is_ok();
        let fence = Fence::Version(updated.version);
        self.cache.committed(id, fence, taken).await;
        Ok(updated)
    }

    /// Checks the rules against the stored market (never a cached copy) and applies the patch
    /// only to the version checked: if the market changed in between (say, it was resolved, or
    /// it left the versions the precondition allows), the rules are checked again against the
    /// new version. So the precondition holds for the version the patch is applied to.
    async fn update_checked(
        &self,
        actor: &Actor,
        user_id: UserId,
        id: MarketId,
        change: Change<'_>,
    ) -> Result<Market, MarketError> {
        for _ in 0..Self::MAX_UPDATE_ATTEMPTS {
            let current = self.latest(id).await?;
            if current.creator.id != user_id && !actor.can(Permission::Delete) {
                return Err(MarketError::PermissionDenied(Permission::Delete));
            }
            if !change.precondition.allows(current.version) {
                return Err(MarketError::PreconditionFailed(id));
            }
            if current.status == MarketStatus::Resolved {
                return Err(MarketError::Resolved(id));
            }
            let updated = self
                .markets
                .update(id, current.version, change.patch.clone(), change.jobs)
                .await?;
            if let Some(updated) = updated {
                return Ok(updated);
            }
        }
        Err(MarketError::Contended(id))
    }

    /// How often an update re-checks a market that keeps changing before giving up.
    const MAX_UPDATE_ATTEMPTS: usize = 16;

    /// Deletes a market, if it is at a version `precondition` allows, recording `audit` in the
    /// deletion's transaction; needs [`Permission::Delete`].
    pub async fn delete(
        &self,
        actor: &Actor,
        id: MarketId,
        precondition: &Precondition,
        audit: &AuditEvent,
    ) -> Result<(), MarketError> {
        require(actor, Permission::Delete)?;
        let deleted = match precondition {
            Precondition::Any => self.markets.delete(id, None, Some(audit)).await?,
            Precondition::Versions(_) => self.delete_checked(id, precondition, audit).await?,
        };
        let taken = self.cache.remove(id).await.is_ok();
        if !deleted {
            return Err(MarketError::NotFound(id));
        }
        self.cache.committed(id, Fence::Deleted, taken).await;
        Ok(())
    }
}

/// A patch, the jobs it queues, and the versions it may be applied to.
struct Change<'a> {
    patch: MarketPatch,
    jobs: &'a [NewJob],
    precondition: &'a Precondition,
}

impl<M: MarketRepository, C: Cache> MarketService<M, C> {
    /// Deletes the market only at a version `precondition` allows, checked by the deletion
    /// itself: a market that changed between the check and the deletion is checked again.
    /// Whether there was one to delete.
    async fn delete_checked(
        &self,
        id: MarketId,
        precondition: &Precondition,
        audit: &AuditEvent,
    ) -> Result<bool, MarketError> {
        for _ in 0..Self::MAX_UPDATE_ATTEMPTS {
            let Some(current) = self.markets.find_latest(id).await? else {
                return Ok(false);
            };
            if !precondition.allows(current.version) {
                return Err(MarketError::PreconditionFailed(id));
            }
            if self
                .markets
                .delete(id, Some(current.version), Some(audit))
                .await?
            {
                return Ok(true);
            }
        }
        Err(MarketError::Contended(id))
    }
}

/// The use case's error for a repository's refusal to create.
fn create_error(error: CreateMarketError) -> MarketError {
    match error {
        // The caller's own account vanished between authentication and now.
        CreateMarketError::UnknownCreator(_) => MarketError::Unauthenticated,
        CreateMarketError::KeyReused => MarketError::KeyReused,
        CreateMarketError::KeyInFlight => MarketError::KeyInFlight,
        CreateMarketError::Repository(error) => error.into(),
    }
}

/// The acting user's id if they hold `permission`.
fn require(actor: &Actor, permission: Permission) -> Result<UserId, MarketError> {
    let Some(user_id) = actor.user_id() else {
        return Err(MarketError::Unauthenticated);
    };
    if actor.can(permission) {
        Ok(user_id)
    } else {
        Err(MarketError::PermissionDenied(permission))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PasswordHash;
    use crate::cache::{Cache, FenceBook, FencedCache, OwnChanges};
    use crate::market::{Description, MarketName, Volume};
    use crate::permission::Role;
    use crate::testing::{InMemoryCache, InMemoryStore};
    use crate::user::{DisplayName, Email, NewUser, UserId, UserRepository};
    use futures_executor::block_on;
    use std::sync::Arc;
    use std::time::Duration;

    struct World {
        store: InMemoryStore,
        cache: InMemoryCache,
        markets: MarketService<InMemoryStore, InMemoryCache>,
    }

    fn world() -> World {
        let store = InMemoryStore::new();
        let cache = InMemoryCache::default();
        World {
            markets: MarketService::new(store.clone(), cache.clone()),
            store,
            cache,
        }
    }

    impl World {
        fn actor(&self, name: &str, role: Role) -> Actor {
            let user = block_on(UserRepository::create(
                &self.store,
                NewUser {
                    id: UserId::new(),
                    email: Email::parse(&format!("{name}@example.com")).unwrap(),
                    display_name: DisplayName::parse(name).unwrap(),
                    password_hash: PasswordHash::new("x"),
                    role,
                    email_verified: true,
                },
            ))
            .unwrap();
            Actor::User { id: user.id, role }
        }

        fn create(&self, actor: &Actor, status: MarketStatus) -> Market {
            let draft = MarketDraft {
                name: MarketName::parse("Will it snow?").unwrap(),
                description: Description::parse("").unwrap(),
                status,
                volume: Volume::ZERO,
            };
            block_on(self.markets.create(actor, draft)).unwrap()
        }
    }

    fn rename() -> MarketPatch {
        MarketPatch {
            name: Some(MarketName::parse("Renamed").unwrap()),
            ..MarketPatch::default()
        }
    }

    #[test]
    fn markets_are_created_by_the_caller() {
        let world = world();
        let ann = world.actor("ann", Role::User);
        let market = world.create(&ann, MarketStatus::Open);
        assert_eq!(Some(market.creator.id), ann.user_id());
        let (found, status) = block_on(world.markets.get(market.id)).unwrap();
        assert_eq!(
            (found, status),
            (market, CacheStatus::Hit),
            "written through"
        );
    }

    #[test]
    fn anonymous_callers_cannot_create() {
        let world = world();
        let draft = MarketDraft {
            name: MarketName::parse("x").unwrap(),
            description: Description::parse("").unwrap(),
            status: MarketStatus::Open,
            volume: Volume::ZERO,
        };
        let refused = block_on(world.markets.create(&Actor::Anonymous, draft));
        assert!(matches!(refused, Err(MarketError::Unauthenticated)));
    }

    #[test]
    fn owners_and_moderators_may_update_strangers_may_not() {
        let world = world();
        let owner = world.actor("owner", Role::User);
        let stranger = world.actor("stranger", Role::User);
        let moderator = world.actor("mod", Role::Moderator);
        let market = world.create(&owner, MarketStatus::Open);
        let denied = block_on(world.markets.update(
            &stranger,
            market.id,
            rename(),
            &Precondition::Any,
        ));
        assert!(matches!(
            denied,
            Err(MarketError::PermissionDenied(Permission::Delete))
        ));
        assert!(
            block_on(
                world
                    .markets
                    .update(&owner, market.id, rename(), &Precondition::Any)
            )
            .is_ok()
        );
        assert!(
            block_on(
                world
                    .markets
                    .update(&moderator, market.id, rename(), &Precondition::Any)
            )
            .is_ok()
        );
    }

    #[test]
    fn resolved_markets_are_frozen_but_ownership_is_checked_first() {
        let world = world();
        let owner = world.actor("owner", Role::User);
        let stranger = world.actor("stranger", Role::User);
        let market = world.create(&owner, MarketStatus::Resolved);
        let frozen = block_on(world.markets.update(
            &owner,
            market.id,
            rename(),
            &Precondition::Any,
        ));
        assert!(matches!(frozen, Err(MarketError::Resolved(id)) if id == market.id));
        let denied = block_on(world.markets.update(
            &stranger,
            market.id,
            rename(),
            &Precondition::Any,
        ));
        assert!(matches!(denied, Err(MarketError::PermissionDenied(_))));
    }

    #[test]
    fn empty_patches_are_invalid() {
        let world = world();
        let owner = world.actor("owner", Role::User);
        let market = world.create(&owner, MarketStatus::Open);
        let empty = block_on(world.markets.update(
            &owner,
            market.id,
            MarketPatch::default(),
            &Precondition::Any,
        ));
        assert!(matches!(empty, Err(MarketError::Invalid(_))));
    }

    fn deletion() -> AuditEvent {
        AuditEvent::new(crate::audit::AuditAction::MarketDeleted)
    }

    #[test]
    fn only_moderators_and_admins_delete() {
        let world = world();
        let owner = world.actor("owner", Role::User);
        let admin = world.actor("admin", Role::Admin);
        let market = world.create(&owner, MarketStatus::Open);
        let denied = block_on(world.markets.delete(
            &owner,
            market.id,
            &Precondition::Any,
            &deletion(),
        ));
        assert!(matches!(
            denied,
            Err(MarketError::PermissionDenied(Permission::Delete))
        ));
        block_on(
            world
                .markets
                .delete(&admin, market.id, &Precondition::Any, &deletion()),
        )
        .unwrap();
        let gone = block_on(world.markets.delete(
            &admin,
            market.id,
            &Precondition::Any,
            &deletion(),
        ));
        assert!(matches!(gone, Err(MarketError::NotFound(_))));
        assert_eq!(
            block_on(world.cache.get(market.id)).unwrap(),
            None,
            "cache entry removed"
        );
        let missing = block_on(world.markets.get(market.id));
        assert_eq!(
            missing.map_err(|e| e.to_string()).err(),
            Some(format!("Market with id {} not found", market.id))
        );
    }

    #[test]
    fn reads_fill_the_cache_and_updates_refresh_it() {
        let world = world();
        let owner = world.actor("owner", Role::User);
        let market = world.create(&owner, MarketStatus::Open);
        block_on(world.cache.remove(market.id)).unwrap();
        world.cache.clear();
        let (_, first) = block_on(world.markets.get(market.id)).unwrap();
        let (_, second) = block_on(world.markets.get(market.id)).unwrap();
        assert_eq!((first, second), (CacheStatus::Miss, CacheStatus::Hit));
        let updated = block_on(world.markets.update(
            &owner,
            market.id,
            rename(),
            &Precondition::Any,
        ))
        .unwrap();
        assert_eq!(updated.version, market.version + 1);
        let (cached, status) = block_on(world.markets.get(market.id)).unwrap();
        assert_eq!((cached, status), (updated, CacheStatus::Hit));
    }

    /// A service whose cache this writer cannot update while readers still get its entries.
    fn fenced_world() -> (
        World,
        MarketService<InMemoryStore, FencedCache<InMemoryCache, OwnChanges>>,
    ) {
        let world = world();
        let book = Arc::new(FenceBook::new(Duration::from_secs(3600), 100));
        let fenced = FencedCache::new(world.cache.clone(), book, OwnChanges);
        let markets = MarketService::new(world.store.clone(), fenced);
        (world, markets)
    }

    #[test]
    fn an_update_the_cache_missed_is_never_followed_by_the_old_copy() {
        let (world, markets) = fenced_world();
        let owner = world.actor("owner", Role::User);
        let market = world.create(&owner, MarketStatus::Open);
        world.cache.set_writes_failing(true);
        let updated =
            block_on(markets.update(&owner, market.id, rename(), &Precondition::Any)).unwrap();
        assert_eq!(
            block_on(world.cache.get(market.id)).unwrap(),
            Some(market.clone()),
            "the stale copy is still in the cache"
        );
        let (read, status) = block_on(markets.get(market.id)).unwrap();
        assert_eq!((read, status), (updated.clone(), CacheStatus::Miss));
        world.cache.set_writes_failing(false);
        block_on(markets.get(market.id)).unwrap();
        let (read, status) = block_on(markets.get(market.id)).unwrap();
        assert_eq!(
            (read, status),
            (updated, CacheStatus::Hit),
            "healed by the read"
        );
    }

    #[test]
    fn a_cache_restored_from_an_old_snapshot_never_serves_what_was_changed_since() {
        let (world, markets) = fenced_world();
        let owner = world.actor("owner", Role::User);
        let market = world.create(&owner, MarketStatus::Open);
        let updated =
            block_on(markets.update(&owner, market.id, rename(), &Precondition::Any)).unwrap();
        // The cache took the update, then lost it: it came back with the version before.
        world.cache.clear();
        block_on(world.cache.put(std::slice::from_ref(&market))).unwrap();
        let (read, status) = block_on(markets.get(market.id)).unwrap();
        assert_eq!((read, status), (updated, CacheStatus::Miss));
    }

    #[test]
    fn a_deletion_the_cache_missed_is_never_followed_by_the_old_copy() {
        let (world, markets) = fenced_world();
        let admin = world.actor("admin", Role::Admin);
        let market = world.create(&admin, MarketStatus::Open);
        world.cache.set_writes_failing(true);
        block_on(markets.delete(&admin, market.id, &Precondition::Any, &deletion())).unwrap();
        assert!(block_on(world.cache.get(market.id)).unwrap().is_some());
        let read = block_on(markets.get(market.id));
        assert!(matches!(read, Err(MarketError::NotFound(_))), "{read:?}");
    }

    #[test]
    fn a_stale_precondition_changes_and_deletes_nothing() {
        let world = world();
        let admin = world.actor("admin", Role::Admin);
        let market = world.create(&admin, MarketStatus::Open);
        let current = Precondition::Versions(vec![market.version]);
        let renamed =
            block_on(world.markets.update(&admin, market.id, rename(), &current)).unwrap();
        let refused = block_on(world.markets.update(&admin, market.id, rename(), &current));
        assert!(matches!(refused, Err(MarketError::PreconditionFailed(id)) if id == market.id));
        let refused = block_on(
            world
                .markets
                .delete(&admin, market.id, &current, &deletion()),
        );
        assert!(matches!(refused, Err(MarketError::PreconditionFailed(_))));
        let never = Precondition::Versions(Vec::new());
        let refused = block_on(world.markets.delete(&admin, market.id, &never, &deletion()));
        assert!(matches!(refused, Err(MarketError::PreconditionFailed(_))));
        let (kept, _) = block_on(world.markets.get(market.id)).unwrap();
        assert_eq!(kept, renamed, "nothing changed");
        let now = Precondition::Versions(vec![market.version, renamed.version]);
        block_on(world.markets.delete(&admin, market.id, &now, &deletion())).unwrap();
        let gone = block_on(world.markets.delete(&admin, market.id, &now, &deletion()));
        assert!(matches!(gone, Err(MarketError::NotFound(_))));
    }

    #[test]
    fn warming_loads_the_markets_with_most_volume() {
        let world = world();
        let owner = world.actor("owner", Role::User);
        let mut ids = Vec::new();
        for cents in [5, 50, 500] {
            let draft = MarketDraft {
                name: MarketName::parse("m").unwrap(),
                description: Description::parse("").unwrap(),
                status: MarketStatus::Open,
                volume: Volume::from_cents(cents).unwrap(),
            };
            ids.push(block_on(world.markets.create(&owner, draft)).unwrap().id);
        }
        world.cache.clear();
        let two = PageSize::new("count", 2).unwrap();
        assert_eq!(block_on(world.markets.warm_cache(two)).unwrap(), 2);
        assert!(
            block_on(world.cache.get(ids[0])).unwrap().is_none(),
            "least volume"
        );
        assert!(block_on(world.cache.get(ids[1])).unwrap().is_some());
        assert!(block_on(world.cache.get(ids[2])).unwrap().is_some());
    }
}
