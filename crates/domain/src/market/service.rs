//! The market use cases: who may create, change and delete markets, and on which rules.

use super::model::{Market, MarketDraft, MarketPatch, MarketSummary, NewMarket};
use super::query::{KeysetPage, KeysetRequest, MarketFilter, MarketSort, Page, PageRequest};
use super::repository::{CreateMarketError, MarketRepository};
use super::values::{MarketId, MarketStatus};
use crate::error::{RepositoryError, ValidationError};
use crate::permission::{Actor, Permission};

/// Why a market use case failed.
#[derive(Debug, thiserror::Error)]
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
    /// The input breaks a rule that its types cannot express (e.g. an empty patch).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The store failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Applies the market rules on top of a [`MarketRepository`].
#[derive(Debug, Clone)]
pub struct MarketService<M> {
    markets: M,
}

impl<M: MarketRepository> MarketService<M> {
    /// Builds the service on its repository.
    pub fn new(markets: M) -> Self {
        Self { markets }
    }

    /// Creates a market owned by the caller; needs [`Permission::Write`].
    pub async fn create(&self, actor: &Actor, draft: MarketDraft) -> Result<Market, MarketError> {
        let creator_id = require(actor, Permission::Write)?;
        let new = NewMarket {
            id: MarketId::new(),
            creator_id,
            name: draft.name,
            description: draft.description,
            status: draft.status,
            volume: draft.volume,
        };
        self.markets.create(new).await.map_err(|error| match error {
            // The caller's own account vanished between authentication and now.
            CreateMarketError::UnknownCreator(_) => MarketError::Unauthenticated,
            CreateMarketError::Repository(error) => error.into(),
        })
    }

    /// The market with this id.
    pub async fn get(&self, id: MarketId) -> Result<Market, MarketError> {
        self.markets
            .find_by_id(id)
            .await?
            .ok_or(MarketError::NotFound(id))
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

    /// Changes a market. The creator may change it with [`Permission::Write`]; anyone else needs
    /// [`Permission::Delete`]. Ownership is checked before the resolved rule, so a stranger
    /// learns nothing about the market's state.
    pub async fn update(
        &self,
        actor: &Actor,
        id: MarketId,
        patch: MarketPatch,
    ) -> Result<Market, MarketError> {
        let user_id = require(actor, Permission::Write)?;
        if patch.is_empty() {
            return Err(ValidationError::new("body", "must change at least one field").into());
        }
        let current = self.get(id).await?;
        if current.creator.id != user_id && !actor.can(Permission::Delete) {
            return Err(MarketError::PermissionDenied(Permission::Delete));
        }
        if current.status == MarketStatus::Resolved {
            return Err(MarketError::Resolved(id));
        }
        self.markets
            .update(id, patch)
            .await?
            .ok_or(MarketError::NotFound(id))
    }

    /// Deletes a market; needs [`Permission::Delete`].
    pub async fn delete(&self, actor: &Actor, id: MarketId) -> Result<(), MarketError> {
        require(actor, Permission::Delete)?;
        if self.markets.delete(id).await? {
            Ok(())
        } else {
            Err(MarketError::NotFound(id))
        }
    }
}

/// The acting user's id if they hold `permission`.
fn require(actor: &Actor, permission: Permission) -> Result<crate::user::UserId, MarketError> {
    let Some(user_id) = actor.user_id() else {
        return Err(MarketError::Unauthenticated);
    };
    if actor.can(permission) {
        Ok(user_id)
    } else {
        Err(MarketError::PermissionDenied(permission))
    }
}
