//! The success envelope: `{"success": true, "data": ..., "meta"?: ...}`.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// A successful response body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always `true`.
    pub success: bool,
    /// The payload.
    pub data: T,
    /// Paging information, on lists only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

/// Paging information of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Meta {
    /// Offset paging.
    Offset {
        /// The page number, from 1.
        page: u32,
        /// Items per page.
        page_size: u32,
        /// Items in the whole list.
        total: u64,
    },
    /// Cursor paging.
    Cursor {
        /// Pass as `cursor` for the next page; `null` on the last page.
        next_cursor: Option<String>,
    },
}

/// `status` with `data` in the envelope.
pub fn respond<T: Serialize>(status: StatusCode, data: T) -> HttpResponse {
    HttpResponse::build(status).json(Envelope {
        success: true,
        data,
        meta: None,
    })
}

/// 200 with `data` in the envelope.
pub fn ok<T: Serialize>(data: T) -> HttpResponse {
    respond(StatusCode::OK, data)
}

/// 200 with a list and its paging information.
pub fn page<T: Serialize>(data: T, meta: Meta) -> HttpResponse {
    HttpResponse::Ok().json(Envelope {
        success: true,
        data,
        meta: Some(meta),
    })
}
