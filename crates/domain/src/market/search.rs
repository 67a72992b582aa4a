//! Searching markets by what they are about.

use crate::error::ValidationError;
use crate::market::MarketSummary;

/// A search query: 1 to 500 characters after trimming, no NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery(String);

impl SearchQuery {
    /// The longest query accepted, in characters.
    pub const MAX_CHARS: usize = 500;

    /// Trims and checks `raw`.
    ///
    /// # Errors
    /// If `raw` is blank, longer than 500 characters or holds a NUL (field `query`).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        crate::text::trimmed_within("query", raw, 1, Self::MAX_CHARS).map(Self)
    }

    /// The trimmed query.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many results a search returns: 1 to 50, 10 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimit(u32);

impl SearchLimit {
    /// The limit used when a caller does not choose.
    pub const DEFAULT: SearchLimit = SearchLimit(10);

    /// Checks `limit`.
    ///
    /// # Errors
    /// If `limit` is outside `1..=50` (field `limit`).
    pub fn new(limit: u32) -> Result<Self, ValidationError> {
        if (1..=50).contains(&limit) {
            Ok(Self(limit))
        } else {
            Err(ValidationError::new("limit", "must be between 1 and 50"))
        }
    }

    /// The limit.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A market found by a search, with how well it matches: `0.0..=1.0`, higher is closer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSummary {
    /// The market.
    pub market: MarketSummary,
    /// How well it matches.
    pub score: f32,
}

/// How a search was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// By embedding similarity.
    Semantic,
    /// By the database's full-text search, because semantic search was unavailable.
    Fallback,
}

impl SearchMode {
    /// The mode's name, as sent in `X-Search-Mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Semantic => "semantic",
            Self::Fallback => "fallback",
        }
    }
}

/// The results of a search, best first, and how they were found.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    /// The markets, best match first.
    pub hits: Vec<ScoredSummary>,
    /// How they were found.
    pub mode: SearchMode,
    /// Why semantic search was not used, when it was not (for the operator's log).
    pub fallback_cause: Option<String>,
    /// Whether the fallback was the embedding provider's fault (not the vector index's, which
    /// is the database's): what readiness reports as `embeddings` down.
    pub embedding_failed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_trimmed_and_bounded() {
        assert_eq!(SearchQuery::parse("  rain  ").unwrap().as_str(), "rain");
        assert_eq!(SearchQuery::parse("   ").unwrap_err().field, "query");
        assert!(SearchQuery::parse(&"q".repeat(500)).is_ok());
        assert!(SearchQuery::parse(&"q".repeat(501)).is_err());
        assert_eq!(SearchQuery::parse("ra\0in").unwrap_err().field, "query");
    }

    #[test]
    fn limits_are_bounded() {
        assert!(SearchLimit::new(0).is_err());
        assert_eq!(SearchLimit::new(50).unwrap().get(), 50);
        assert_eq!(SearchLimit::new(51).unwrap_err().field, "limit");
    }
}
