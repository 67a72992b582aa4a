//! Offset paging, shared by every list: how big a page is, which page is asked for, and a page
//! with its exact total. Keyset paging is per list (its position depends on the sort), see
//! [`crate::market::KeysetRequest`].

use crate::error::ValidationError;

/// How many items a page holds: 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageSize(u32);

impl PageSize {
    /// The size used when a caller does not choose.
    pub const DEFAULT: PageSize = PageSize(20);
    /// The largest page.
    pub const MAX: u32 = 100;

    /// Checks `size` for the query parameter `field`.
    ///
    /// # Errors
    /// If `size` is outside `1..=100`.
    pub fn new(field: &'static str, size: u32) -> Result<Self, ValidationError> {
        if (1..=Self::MAX).contains(&size) {
            Ok(Self(size))
        } else {
            Err(ValidationError::new(field, "must be between 1 and 100"))
        }
    }

    /// The size.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// An offset page request: page numbers start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    page: u32,
    size: PageSize,
}

impl PageRequest {
    /// The deepest row offset paging reaches (`page * page_size`). A deeper page costs a scan
    /// of every row before it however the list is indexed; keyset (cursor) paging goes further
    /// at the same cost per page.
    pub const MAX_ROWS: u64 = 10_000;

    /// Checks the page number.
    ///
    /// # Errors
    /// If `page` is 0, or the page ends past [`Self::MAX_ROWS`].
    pub fn new(page: u32, size: PageSize) -> Result<Self, ValidationError> {
        if page == 0 {
            return Err(ValidationError::new("page", "must be at least 1"));
        }
        if u64::from(page) * u64::from(size.get()) > Self::MAX_ROWS {
            return Err(ValidationError::new(
                "page",
                format!(
                    "must not reach past row {} (page * page_size); use cursor paging \
                     (cursor and limit) to go further",
                    Self::MAX_ROWS
                ),
            ));
        }
        Ok(Self { page, size })
    }

    /// The page number, from 1.
    pub fn page(self) -> u32 {
        self.page
    }

    /// Items per page.
    pub fn size(self) -> PageSize {
        self.size
    }

    /// How many items precede this page.
    pub fn offset(self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.size.get())
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            size: PageSize::DEFAULT,
        }
    }
}

/// One offset page of a list with the exact number of items in the whole list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// Which page this is.
    pub request: PageRequest,
    /// How many items the whole (filtered) list holds.
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_bounded() {
        assert!(PageSize::new("page_size", 0).is_err());
        assert!(PageSize::new("page_size", 1).is_ok());
        assert!(PageSize::new("page_size", 100).is_ok());
        assert_eq!(
            PageSize::new("limit", 101).map_err(|e| e.field),
            Err("limit")
        );
    }

    #[test]
    fn offset_paging_stops_at_ten_thousand_rows() {
        let size = PageSize::new("page_size", 100).unwrap();
        assert_eq!(PageRequest::new(100, size).unwrap().offset(), 9_900);
        assert_eq!(
            PageRequest::new(101, size).map_err(|e| e.field),
            Err("page")
        );
        assert!(PageRequest::new(500, PageSize::DEFAULT).is_ok());
        assert!(
            PageRequest::new(u32::MAX, PageSize::DEFAULT).is_err(),
            "no overflow"
        );
    }

    #[test]
    fn offsets_follow_page_numbers() {
        let size = PageSize::new("page_size", 25).unwrap();
        assert_eq!(PageRequest::new(3, size).unwrap().offset(), 50);
        assert!(PageRequest::new(0, PageSize::DEFAULT).is_err());
    }
}
