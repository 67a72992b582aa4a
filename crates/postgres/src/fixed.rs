//! Statements of a fixed shape that diesel would not keep prepared on its own.
//!
//! diesel-async keeps a statement prepared on the connection (parsed and planned once, then
//! only executed) when every node of the query says it is safe to cache. An SQL literal
//! (`sql()`, `sql_query`) never does: its text could be built per request, and caching every
//! text would grow the cache without bound. The search statements are such literals (full-text
//! operators and pgvector's `<=>` have no diesel DSL), so without [`Fixed`] PostgreSQL would
//! parse and plan them on every request.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// `Q`, kept prepared by the connection's statement cache.
///
/// Wrapping is the call site's promise that its SQL text comes from a small fixed set (every
/// value a bind parameter, never formatted into the text). The cache key stays the SQL text
/// and the bind types, as for any query without a static query id: a call site that builds
/// several shapes gets one prepared statement per shape and can never execute another shape's.
/// Keying by text costs one hash of a string diesel-async renders for every query anyway.
#[derive(Debug, Clone)]
pub(crate) struct Fixed<Q>(pub(crate) Q);

impl<Q> QueryId for Fixed<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Fixed<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Fixed<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}
