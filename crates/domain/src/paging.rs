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
    /// Checks the page number.
    ///
    /// # Errors
    /// If `page` is 0.
    pub fn new(page: u32, size: PageSize) -> Result<Self, ValidationError> {
        if page == 0 {
            return Err(ValidationError::new("page", "must be at least 1"));
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
    fn offsets_follow_page_numbers() {
        let size = PageSize::new("page_size", 25).unwrap();
        assert_eq!(PageRequest::new(3, size).unwrap().offset(), 50);
        assert!(PageRequest::new(0, PageSize::DEFAULT).is_err());
    }
}
