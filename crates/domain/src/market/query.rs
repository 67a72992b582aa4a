//! How lists of markets are filtered, ordered and paged.

use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

use super::model::MarketSummary;
use super::values::{MarketId, MarketStatus, Volume};
use crate::error::ValidationError;
use crate::paging::PageSize;

/// Which markets a list includes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarketFilter {
    /// Only markets with this status, if set.
    pub status: Option<MarketStatus>,
}

impl MarketFilter {
    /// The statuses of the markets this filter admits: it admits exactly the markets with one
    /// of them. So a store that keeps a count per status answers every list's total from those
    /// counts, without counting rows (a filter on anything else would end that).
    pub fn statuses(self) -> Vec<MarketStatus> {
        let Self { status } = self;
        status.map_or_else(|| MarketStatus::ALL.to_vec(), |status| vec![status])
    }
}

/// The column a list is ordered by; ties are always broken by id in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortField {
    /// Creation time.
    CreatedAt,
    /// Traded volume.
    Volume,
}

/// A list ordering, written `created_at`, `-created_at`, `volume` or `-volume` (minus: descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarketSort {
    /// The column.
    pub field: SortField,
    /// Whether larger values come first.
    pub descending: bool,
}

impl Default for MarketSort {
    /// Newest first.
    fn default() -> Self {
        Self {
            field: SortField::CreatedAt,
            descending: true,
        }
    }
}

impl fmt::Display for MarketSort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.descending { "-" } else { "" };
        let field = match self.field {
            SortField::CreatedAt => "created_at",
            SortField::Volume => "volume",
        };
        write!(f, "{sign}{field}")
    }
}

impl FromStr for MarketSort {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (descending, name) = match s.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, s),
        };
        let field = match name {
            "created_at" => SortField::CreatedAt,
            "volume" => SortField::Volume,
            _ => {
                return Err(ValidationError::new(
                    "sort",
                    "must be one of created_at, -created_at, volume, -volume",
                ));
            }
        };
        Ok(Self { field, descending })
    }
}

/// The value of the sort column at a position in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortKey {
    /// For lists sorted by creation time.
    CreatedAt(DateTime<Utc>),
    /// For lists sorted by volume.
    Volume(Volume),
}

impl SortKey {
    /// Which sort column this key belongs to.
    pub fn field(&self) -> SortField {
        match self {
            SortKey::CreatedAt(_) => SortField::CreatedAt,
            SortKey::Volume(_) => SortField::Volume,
        }
    }
}

/// A position in a sorted list: the sort key and id of the last item seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeysetPosition {
    /// The last item's sort key.
    pub key: SortKey,
    /// The last item's id, breaking ties.
    pub id: MarketId,
}

impl KeysetPosition {
    /// Where `summary` stands in a list ordered by `field`.
    pub fn of(summary: &MarketSummary, field: SortField) -> Self {
        let key = match field {
            SortField::CreatedAt => SortKey::CreatedAt(summary.created_at),
            SortField::Volume => SortKey::Volume(summary.volume),
        };
        Self {
            key,
            id: summary.id,
        }
    }
}

/// A keyset (cursor) page request: the items strictly after `after` in `sort` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeysetRequest {
    sort: MarketSort,
    after: Option<KeysetPosition>,
    limit: PageSize,
}

impl KeysetRequest {
    /// Builds a request, checking that the position was taken from a list with the same order.
    ///
    /// # Errors
    /// If `after` holds a key for another sort column (field `cursor`).
    pub fn new(
        sort: MarketSort,
        after: Option<KeysetPosition>,
        limit: PageSize,
    ) -> Result<Self, ValidationError> {
        if after.is_some_and(|position| position.key.field() != sort.field) {
            return Err(ValidationError::new(
                "cursor",
                "was issued for a different sort order",
            ));
        }
        Ok(Self { sort, after, limit })
    }

    /// The order.
    pub fn sort(&self) -> MarketSort {
        self.sort
    }

    /// Where the previous page ended, if this is not the first page.
    pub fn after(&self) -> Option<KeysetPosition> {
        self.after
    }

    /// The most items to return.
    pub fn limit(&self) -> PageSize {
        self.limit
    }
}

/// One keyset page and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysetPage<T> {
    /// The items, in the requested order.
    pub items: Vec<T>,
    /// The position to pass as `after` for the next page; `None` on the last page.
    pub next: Option<KeysetPosition>,
}

impl KeysetPage<MarketSummary> {
    /// A page from the items after the request's position, in order, fetched with one item of
    /// look-ahead (`limit + 1` asked for): the extra item only says that another page follows.
    pub fn from_lookahead(mut items: Vec<MarketSummary>, request: &KeysetRequest) -> Self {
        let limit = request.limit().get() as usize;
        let has_more = items.len() > limit;
        items.truncate(limit);
        let next = items
            .last()
            .filter(|_| has_more)
            .map(|last| KeysetPosition::of(last, request.sort().field));
        Self { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_the_statuses_they_admit() {
        assert_eq!(MarketFilter::default().statuses(), MarketStatus::ALL);
        let closed = MarketFilter {
            status: Some(MarketStatus::Closed),
        };
        assert_eq!(closed.statuses(), [MarketStatus::Closed]);
    }

    #[test]
    fn sorts_parse_and_print_the_same() {
        for raw in ["created_at", "-created_at", "volume", "-volume"] {
            assert_eq!(
                raw.parse::<MarketSort>().map(|s| s.to_string()),
                Ok(raw.into())
            );
        }
        assert!("name".parse::<MarketSort>().is_err());
        assert!("--volume".parse::<MarketSort>().is_err());
        assert_eq!(MarketSort::default().to_string(), "-created_at");
    }

    #[test]
    fn a_position_from_another_order_is_refused() {
        let position = KeysetPosition {
            key: SortKey::Volume(Volume::ZERO),
            id: MarketId::new(),
        };
        let by_date = MarketSort::default();
        let refused = KeysetRequest::new(by_date, Some(position), PageSize::DEFAULT);
        assert_eq!(refused.map_err(|e| e.field), Err("cursor"));
        let by_volume = MarketSort {
            field: SortField::Volume,
            descending: false,
        };
        assert!(KeysetRequest::new(by_volume, Some(position), PageSize::DEFAULT).is_ok());
    }
}
