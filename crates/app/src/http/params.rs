//! Numeric query parameters, shared by every listing. Query structs take them as strings and
//! parse them here, so a bad value is a 422 naming its field (serde's own error would name none)
//! and every listing reports it the same way.

use markets_domain::ValidationError;
use markets_domain::market::PageSize;

/// `raw` as a whole number, if given.
///
/// # Errors
/// If it is not a non-negative integer (field `field`).
pub fn number(field: &'static str, raw: Option<&str>) -> Result<Option<u32>, ValidationError> {
    raw.map(|raw| {
        raw.parse()
            .map_err(|_| ValidationError::new(field, "must be a positive integer"))
    })
    .transpose()
}

/// `raw` as a page size, [`PageSize::DEFAULT`] if not given.
///
/// # Errors
/// If it is not a number from 1 to 100 (field `field`).
pub fn page_size(field: &'static str, raw: Option<&str>) -> Result<PageSize, ValidationError> {
    number(field, raw)?.map_or(Ok(PageSize::DEFAULT), |size| PageSize::new(field, size))
}
