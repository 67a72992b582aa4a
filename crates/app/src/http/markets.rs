//! `/api/v1/markets`: thin handlers that parse, call the market service and shape the response.

use actix_web::http::StatusCode;
use actix_web::http::header::{ETAG as ETAG_HEADER, HeaderName, HeaderValue, LOCATION};
use actix_web::{HttpResponse, delete, get, patch, post, web};
use markets_domain::ValidationError;
use markets_domain::audit::AuditAction;
use markets_domain::market::{
    Creation, Description, KeysetRequest, MarketDraft, MarketFilter, MarketId, MarketName,
    MarketPatch, MarketSort, MarketStatus, PageRequest, PageSize, SearchLimit, SearchQuery, Volume,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::warn;
use utoipa::IntoParams;

use super::conditional::{Conditions, etag};
use super::cursor::Cursors;
use super::dto::{
    CreateMarketRequest, Field, MarketResponse, MarketSummaryResponse, SearchHitResponse,
    UpdateMarketRequest, required, typed,
};
use super::envelope::{self, CursorMeta, Envelope, Meta, OffsetMeta, Page};
use super::error::{AppError, ErrorBody};
use super::extract::{Authenticated, Caller, CanDelete, CanWrite, JsonBody, Require};
use super::idempotency::{IDEMPOTENT_REPLAYED, KeyHeader};
use super::params::{number, page_size};
use super::schemas::MarketPatchSchema;
use super::security::Context;
use crate::wiring::AppState;

/// The header telling how a search was answered.
pub const X_SEARCH_MODE: &str = "x-search-mode";
/// The header telling whether a market came from the cache.
pub const X_CACHE: &str = "x-cache";

/// Query of `GET /markets`. Either `page`/`page_size` (offset paging, the default) or
/// `cursor`/`limit` (keyset paging); not both.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only markets with this status.
    #[param(inline, value_type = Option<super::schemas::StatusSchema>)]
    status: Option<String>,
    /// The order: newest first by default.
    #[param(inline, value_type = Option<super::schemas::SortSchema>)]
    sort: Option<String>,
    /// Offset paging: the page number, from 1. `page * page_size` must not exceed 10000
    /// (deeper pages are for cursor paging). Not with `cursor` or `limit`.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    page: Option<String>,
    /// Offset paging: items per page (default 20). Not with `cursor` or `limit`.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    page_size: Option<String>,
    /// Cursor paging: the previous page's `meta.next_cursor`, unchanged, for the same `sort`
    /// and `status` (any other value is 422). Not with `page` or `page_size`.
    cursor: Option<String>,
    /// Cursor paging: items per page (default 20). Not with `page` or `page_size`.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// Query of `GET /markets/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What to look for: 1 to 500 characters after trimming whitespace.
    #[param(required = true, inline, value_type = super::schemas::SearchQuerySchema)]
    query: Option<String>,
    /// How many hits at most (default 10).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 50)]
    limit: Option<String>,
}

impl SearchParams {
    /// The query and limit, both checked before either is used.
    pub(super) fn parse(&self) -> Result<(SearchQuery, SearchLimit), AppError> {
        let query = self
            .query
            .as_deref()
            .ok_or_else(|| ValidationError::new("query", "is required"))
            .and_then(SearchQuery::parse);
        let limit = number("limit", self.limit.as_deref())
            .and_then(|limit| limit.map_or(Ok(SearchLimit::DEFAULT), SearchLimit::new));
        AppError::reject_invalid([query.as_ref().err(), limit.as_ref().err()])?;
        Ok((query?, limit?))
    }
}

/// How a list was asked to be paged.
pub(super) enum Paging {
    Offset(PageRequest),
    Keyset(KeysetRequest),
}

impl ListParams {
    /// Every parameter is checked before any is used, so one response lists all that are wrong.
    pub(super) fn parse(
        &self,
        cursors: &Cursors,
    ) -> Result<(MarketFilter, MarketSort, Paging), AppError> {
        let status = self
            .status
            .as_deref()
            .map(str::parse::<MarketStatus>)
            .transpose();
        let sort = self
            .sort
            .as_deref()
            .map_or(Ok(MarketSort::default()), str::parse);
        let size = page_size("page_size", self.page_size.as_deref());
        // Judged against the page size asked for (the default when that is itself invalid).
        let page = number("page", self.page.as_deref())
            .and_then(|page| {
                let size = size.as_ref().copied().unwrap_or(PageSize::DEFAULT);
                PageRequest::new(page.unwrap_or(1), size)
            })
            .map(PageRequest::page);
        let limit = page_size("limit", self.limit.as_deref());
        // A cursor can only be judged against a valid sort and status.
        let after = match (&status, &sort, self.cursor.as_deref()) {
            (Ok(status), Ok(sort), Some(raw)) => cursors
                .decode(raw, *sort, MarketFilter { status: *status })
                .map(Some),
            _ => Ok(None),
        };
        AppError::reject_invalid([
            status.as_ref().err(),
            sort.as_ref().err(),
            page.as_ref().err(),
            size.as_ref().err(),
            limit.as_ref().err(),
            after.as_ref().err(),
        ])?;
        let (filter, sort) = (MarketFilter { status: status? }, sort?);
        let keyset = self.cursor.is_some() || self.limit.is_some();
        if keyset && (self.page.is_some() || self.page_size.is_some()) {
            return Err(AppError::invalid(
                "cursor",
                "cannot be combined with page or page_size",
            ));
        }
        let paging = if keyset {
            Paging::Keyset(KeysetRequest::new(sort, after?, limit?)?)
        } else {
            Paging::Offset(PageRequest::new(page?, size?)?)
        };
        Ok((filter, sort, paging))
    }
}

/// List markets (summaries), offset- or cursor-paged.
#[utoipa::path(
    operation_id = "list_markets",
    tag = "markets", params(ListParams),
    responses(
        (status = 200, description = "A page of summaries: `meta` has `page`, `page_size` and `total` \
            for offset paging, `next_cursor` for cursor paging",
         body = inline(Page<MarketSummaryResponse, Meta>)),
        (status = 401, description = "An `Authorization` header that does not hold a valid token", body = ErrorBody),
        (status = 422, description = "An invalid parameter, both paging styles at once, a page past row \
            10000, or a cursor the service did not mint for this `sort` and `status`", body = ErrorBody),
    )
)]
#[get("/markets")]
pub async fn list(
    state: web::Data<AppState>,
    _caller: Caller,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, AppError> {
    let (filter, sort, paging) = params.parse(state.cursors())?;
    match paging {
        Paging::Offset(request) => {
            let page = state.markets().list(filter, sort, request).await?;
            let meta = Meta::Offset(OffsetMeta {
                page: page.request.page(),
                page_size: page.request.size().get(),
                total: page.total,
            });
            let items: Vec<MarketSummaryResponse> =
                page.items.into_iter().map(Into::into).collect();
            Ok(envelope::page(items, meta))
        }
        Paging::Keyset(request) => {
            let page = state.markets().list_after(filter, request).await?;
            let next_cursor = page
                .next
                .map(|position| state.cursors().encode(position, sort, filter));
            let items: Vec<MarketSummaryResponse> =
                page.items.into_iter().map(Into::into).collect();
            Ok(envelope::page(
                items,
                Meta::Cursor(CursorMeta { next_cursor }),
            ))
        }
    }
}

/// Search markets by meaning (falling back to text search), best first.
#[utoipa::path(
    operation_id = "search_markets",
    tag = "markets", params(SearchParams),
    extensions(("x-rate-limit" = json!({"policy": "search", "per": "client_ip"}))),
    responses(
        (status = 200, description = "Hits, best first; `X-Search-Mode` says `semantic` or `fallback`",
         body = inline(Envelope<Vec<SearchHitResponse>>),
         headers(("X-Search-Mode" = String, description = "`semantic` or `fallback`"))),
        (status = 401, description = "An `Authorization` header that does not hold a valid token", body = ErrorBody),
        (status = 422, description = "Missing or invalid `query` or `limit`", body = ErrorBody),
        (status = 429, description = "Too many searches from this address", body = ErrorBody),
    )
)]
#[get("/markets/search", wrap = "limited!(per_client_ip, search)")]
pub async fn search(
    state: web::Data<AppState>,
    _caller: Caller,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, AppError> {
    let (query, limit) = params.parse()?;
    let results = state.search().search(&query, limit).await?;
    metrics::counter!("search_requests_total", "mode" => results.mode.as_str()).increment(1);
    // Only the provider's failures count against the embedder's health (and are logged at
    // most once a minute); the index's are the database's, which readiness reports itself.
    let log_fallback = results
        .fallback_cause
        .as_ref()
        .filter(|_| !results.embedding_failed || state.search_health().fell_back());
    if let Some(cause) = log_fallback {
        warn!(%cause, "semantic search unavailable, answering with text search");
    }
    let hits: Vec<SearchHitResponse> = results.hits.into_iter().map(Into::into).collect();
    let mut response = envelope::ok(hits);
    response.headers_mut().insert(
        HeaderName::from_static(X_SEARCH_MODE),
        HeaderValue::from_static(results.mode.as_str()),
    );
    Ok(response)
}

/// One market.
#[utoipa::path(
    operation_id = "get_market",
    tag = "markets",
    params(("id" = uuid::Uuid, Path, description = "Market id"), ("If-None-Match" = Option<String>, Header,
        description = "Entity tags (or `*`): when one names the market as it is, 304 without a body")),
    responses(
        (status = 200, description = "The market; `X-Cache` says `HIT` or `MISS`",
         body = inline(Envelope<MarketResponse>),
         headers(("X-Cache" = String, description = "`HIT` or `MISS`"), ("ETag" = String, description = "The market's strong entity tag, `\"<id>.<version>\"`"))),
        (status = 304, description = "`If-None-Match` names the market as it is: no body",
         headers(("ETag" = String, description = "The market's strong entity tag, `\"<id>.<version>\"`"))),
        (status = 401, description = "An `Authorization` header that does not hold a valid token", body = ErrorBody),
        (status = 404, description = "No such market", body = ErrorBody),
        (status = 422, description = "Malformed id", body = ErrorBody),
    )
)]
#[get("/markets/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    _caller: Caller,
    conditions: Conditions,
    id: web::Path<MarketId>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    tracing::Span::current().record("market_id", tracing::field::display(id));
    let (market, cache) = state.markets().get(id).await?;
    metrics::counter!("cache_requests_total", "result" => cache.as_str().to_lowercase())
        .increment(1);
    let tag = etag(&market);
    let mut response = if conditions.not_modified(&market) {
        HttpResponse::NotModified().finish()
    } else {
        envelope::ok(MarketResponse::from(market))
    };
    response.headers_mut().insert(ETAG_HEADER, tag);
    response.headers_mut().insert(
        HeaderName::from_static(X_CACHE),
        HeaderValue::from_static(cache.as_str()),
    );
    Ok(response)
}

/// Create a market; needs `write`.
#[utoipa::path(
    operation_id = "create_market",
    tag = "markets", request_body = CreateMarketRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[ -~]{1,255}$",
        description = "1 to 255 printable ASCII characters, the caller's own: repeating the key \
            with the same market within 24 hours answers what the first request did (with \
            `Idempotent-Replayed: true`) and creates nothing; with another market it is 422 \
            `idempotency_key_reused`; while the first is still running, 409")),
    security(("bearer" = [])),
    extensions(("x-rate-limit" = json!({"policy": "writes", "per": "user"}))),
    responses(
        (status = 201, description = "Created (or, under a repeated `Idempotency-Key`, created \
            before); `Location` names it", body = inline(Envelope<MarketResponse>),
         headers(("Location" = String, description = "The new market's path"),
            ("ETag" = String, description = "The market's strong entity tag, `\"<id>.<version>\"`"),
            ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier \
                request with the same `Idempotency-Key`"))),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Lacks `write`", body = ErrorBody),
        (status = 409, description = "The first request with this `Idempotency-Key` is still running", body = ErrorBody),
        (status = 422, description = "An invalid field or `Idempotency-Key`, or \
            (`idempotency_key_reused`) a key used before with another market", body = ErrorBody),
        (status = 429, description = "Too many writes by this user", body = ErrorBody),
    )
)]
#[post("/markets", wrap = "limited!(per_user, writes)")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Require<CanWrite>,
    key: KeyHeader,
    JsonBody(body): JsonBody<CreateMarketRequest>,
) -> Result<HttpResponse, AppError> {
    let draft = body.into_draft()?;
    let (market, replayed) = match key.for_create(&draft)? {
        None => (state.markets().create(&caller.actor(), draft).await?, false),
        Some(key) => match state
            .markets()
            .create_once(&caller.actor(), draft, &key)
            .await?
        {
            Creation::Created(market) => (market, false),
            Creation::Replayed(market) => (market, true),
        },
    };
    let location = format!("/api/v1/markets/{}", market.id);
    let tag = etag(&market);
    let mut response = envelope::respond(StatusCode::CREATED, MarketResponse::from(market));
    let headers = response.headers_mut();
    if let Ok(value) = location.parse() {
        headers.insert(LOCATION, value);
    }
    headers.insert(ETAG_HEADER, tag);
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The value of a patch field; `null` is refused.
fn patched<T: DeserializeOwned, U>(
    field: &'static str,
    value: Field<Value>,
    parse: impl FnOnce(T) -> Result<U, ValidationError>,
) -> Result<Option<U>, ValidationError> {
    match value {
        Field::Absent => Ok(None),
        Field::Null => Err(ValidationError::new(field, "must not be null")),
        Field::Value(value) => typed(field, value).and_then(parse).map(Some),
    }
}

impl CreateMarketRequest {
    /// The draft this body describes; every invalid field is reported at once.
    pub(super) fn into_draft(self) -> Result<MarketDraft, AppError> {
        let name = required::<String>("name", self.name).and_then(|raw| MarketName::parse(&raw));
        let description = required::<String>("description", self.description)
            .and_then(|raw| Description::parse(&raw));
        let status = self.status.map(|v| typed("status", v)).transpose();
        let volume = self.volume.map(|v| typed("volume", v)).transpose();
        AppError::reject_invalid([
            name.as_ref().err(),
            description.as_ref().err(),
            status.as_ref().err(),
            volume.as_ref().err(),
        ])?;
        Ok(MarketDraft {
            name: name?,
            description: description?,
            status: status?.unwrap_or(MarketStatus::Open),
            volume: volume?.unwrap_or(Volume::ZERO),
        })
    }
}

impl UpdateMarketRequest {
    /// The patch this body describes; every invalid field is reported at once.
    pub(super) fn into_patch(self) -> Result<MarketPatch, AppError> {
        let name = patched("name", self.name, |raw: String| MarketName::parse(&raw));
        let description = patched("description", self.description, |raw: String| {
            Description::parse(&raw)
        });
        let status = patched("status", self.status, Ok::<MarketStatus, _>);
        let volume = patched("volume", self.volume, Ok::<Volume, _>);
        AppError::reject_invalid([
            name.as_ref().err(),
            description.as_ref().err(),
            status.as_ref().err(),
            volume.as_ref().err(),
        ])?;
        Ok(MarketPatch {
            name: name?,
            description: description?,
            status: status?,
            volume: volume?,
        })
    }
}

/// Change a market; needs `write` and being its creator, or `delete`. Resolved markets are frozen.
#[utoipa::path(
    operation_id = "update_market",
    tag = "markets", request_body = MarketPatchSchema,
    params(("id" = uuid::Uuid, Path, description = "Market id"), ("If-Match" = Option<String>, Header,
        description = "Entity tags (or `*`) from `ETag`: the change applies only to a version they name, else 412")),
    security(("bearer" = [])),
    extensions(("x-rate-limit" = json!({"policy": "writes", "per": "user"}))),
    responses(
        (status = 200, description = "The changed market", body = inline(Envelope<MarketResponse>),
         headers(("ETag" = String, description = "The market's strong entity tag, `\"<id>.<version>\"`"))),
        (status = 400, description = "The market is resolved", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Neither creator nor moderator", body = ErrorBody),
        (status = 404, description = "No such market", body = ErrorBody),
        (status = 409, description = "The market kept changing under this update; retry", body = ErrorBody),
        (status = 412, description = "`If-Match` names no version the market is at: nothing changed", body = ErrorBody),
        (status = 422, description = "Malformed id, empty patch, a null or an invalid field", body = ErrorBody),
        (status = 429, description = "Too many writes by this user", body = ErrorBody),
    )
)]
#[patch("/markets/{id}", wrap = "limited!(per_user, writes)")]
pub async fn update(
    state: web::Data<AppState>,
    Authenticated(session): Authenticated,
    conditions: Conditions,
    id: web::Path<MarketId>,
    JsonBody(body): JsonBody<UpdateMarketRequest>,
) -> Result<HttpResponse, AppError> {
    let patch = body.into_patch()?;
    let id = id.into_inner();
    tracing::Span::current().record("market_id", tracing::field::display(id));
    let precondition = conditions.precondition(id);
    let market = state
        .markets()
        .update(&session.actor(), id, patch, &precondition)
        .await?;
    let tag = etag(&market);
    let mut response = envelope::ok(MarketResponse::from(market));
    response.headers_mut().insert(ETAG_HEADER, tag);
    Ok(response)
}

/// Delete a market; needs `delete`.
#[utoipa::path(
    operation_id = "delete_market",
    tag = "markets",
    params(("id" = uuid::Uuid, Path, description = "Market id"), ("If-Match" = Option<String>, Header,
        description = "Entity tags (or `*`) from `ETag`: the change applies only to a version they name, else 412")),
    security(("bearer" = [])),
    extensions(("x-rate-limit" = json!({"policy": "writes", "per": "user"}))),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Lacks `delete`", body = ErrorBody),
        (status = 404, description = "No such market", body = ErrorBody),
        (status = 409, description = "The market kept changing under this deletion; retry", body = ErrorBody),
        (status = 412, description = "`If-Match` names no version the market is at: nothing changed", body = ErrorBody),
        (status = 422, description = "Malformed id", body = ErrorBody),
        (status = 429, description = "Too many writes by this user", body = ErrorBody),
    )
)]
#[delete("/markets/{id}", wrap = "limited!(per_user, writes)")]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Require<CanDelete>,
    Context(context): Context,
    conditions: Conditions,
    id: web::Path<MarketId>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    tracing::Span::current().record("market_id", tracing::field::display(id));
    let event = context
        .event(AuditAction::MarketDeleted, Some(caller.session.user.id))
        .on("market", id);
    let precondition = conditions.precondition(id);
    state
        .markets()
        .delete(&caller.actor(), id, &precondition, &event)
        .await?;
    markets_application::security::log(&event);
    Ok(HttpResponse::NoContent().finish())
}
