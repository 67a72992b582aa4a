//! The success envelope: `{"success": true, "data": ...}`, and for lists `"meta"` too. Each shape
//! is its own type, so the document states exactly what each response holds.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// The constant `V` (an envelope's `success`), documented as the only value it can take.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flag<const V: bool>;

impl<const V: bool> Serialize for Flag<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(V)
    }
}

impl<const V: bool> PartialSchema for Flag<V> {
    fn schema() -> RefOr<Schema> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([V]))
            .build();
        RefOr::T(Schema::Object(schema))
    }
}

impl<const V: bool> ToSchema for Flag<V> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(if V { "True" } else { "False" })
    }
}

/// A successful response body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    /// Always `true`.
    pub success: Flag<true>,
    /// The payload.
    pub data: T,
}

/// A successful list: the items and how they were paged (`M`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Page<T, M> {
    /// Always `true`.
    pub success: Flag<true>,
    /// The items.
    pub data: Vec<T>,
    /// Paging information.
    pub meta: M,
}

/// Offset paging: which page this is, of how many items, of how many in all.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetMeta {
    /// The page number, from 1.
    #[schema(minimum = 1)]
    pub page: u32,
    /// Items per page.
    #[schema(minimum = 1, maximum = 100)]
    pub page_size: u32,
    /// Items in the whole list.
    pub total: u64,
}

/// Cursor paging: where the next page starts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CursorMeta {
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The paging of a list that pages either way: exactly one of the two shapes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Meta {
    /// Offset paging (`page`, `page_size`).
    Offset(OffsetMeta),
    /// Cursor paging (`cursor`, `limit`).
    Cursor(CursorMeta),
}

/// `status` with `data` in the envelope.
pub fn respond<T: Serialize>(status: StatusCode, data: T) -> HttpResponse {
    HttpResponse::build(status).json(Envelope {
        success: Flag,
        data,
    })
}

/// 200 with `data` in the envelope.
pub fn ok<T: Serialize>(data: T) -> HttpResponse {
    respond(StatusCode::OK, data)
}

/// 200 with a list and its paging information.
pub fn page<T: Serialize, M: Serialize>(data: Vec<T>, meta: M) -> HttpResponse {
    HttpResponse::Ok().json(Page {
        success: Flag,
        data,
        meta,
    })
}
