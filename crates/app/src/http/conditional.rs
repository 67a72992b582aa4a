//! Conditional requests on a market (RFC 9110 section 13): its strong entity tag, named after
//! its id and version (every change increments the version, so the tag changes with every
//! change), `If-None-Match` on reads (304) and `If-Match` on changes (412 unless the market is
//! at a version the tags name, checked by the write itself: see [`Precondition`]).

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, IF_MATCH, IF_NONE_MATCH};
use actix_web::{FromRequest, HttpRequest};
use markets_domain::market::{Market, MarketId, Precondition};
use std::future::{Ready, ready};

use super::error::AppError;

/// The strong entity tag of `market` as it is now: `"<id>.<version>"`.
pub fn etag(market: &Market) -> HeaderValue {
    let tag = format!("\"{}.{}\"", market.id, market.version);
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// One entity tag of a condition: its opaque part (between the quotes) and whether it is weak.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tag {
    weak: bool,
    opaque: String,
}

/// A condition's field value: `*` or a list of entity tags. A malformed list keeps the tags
/// read before the fault, so it matches no more than it names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tags {
    Any,
    List(Vec<Tag>),
}

impl Tags {
    /// The tags of every `name` field of `headers` (a field may be repeated).
    fn of(headers: &HeaderMap, name: &HeaderName) -> Option<Self> {
        let mut values = headers.get_all(name).peekable();
        values.peek()?;
        let mut tags = Vec::new();
        for value in values {
            let text = value.to_str().unwrap_or_default();
            if text.trim() == "*" {
                return Some(Self::Any);
            }
            tags.extend(parse_list(text));
        }
        Some(Self::List(tags))
    }
}

/// The entity tags of `text` (`W/"a", "b"`), up to the first malformed one.
fn parse_list(text: &str) -> Vec<Tag> {
    let mut tags = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return tags;
        }
        let weak = rest.starts_with("W/");
        let quoted = if weak { &rest[2..] } else { rest };
        let Some(inner) = quoted.strip_prefix('"') else {
            return tags;
        };
        let Some(end) = inner.find('"') else {
            return tags;
        };
        tags.push(Tag {
            weak,
            opaque: inner[..end].to_owned(),
        });
        rest = &inner[end + 1..];
    }
}

/// The version of market `id` that `tag` names, if it names one.
fn version_of(tag: &Tag, id: MarketId) -> Option<u64> {
    let (tag_id, version) = tag.opaque.split_once('.')?;
    (tag_id == id.to_string()).then(|| version.parse().ok())?
}

/// A request's `If-Match` and `If-None-Match`.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    if_match: Option<Tags>,
    if_none_match: Option<Tags>,
}

impl Conditions {
    /// What `If-Match` requires of market `id`: nothing without the field or with `*`, else
    /// one of the versions its strong tags name (none: the change is refused).
    pub fn precondition(&self, id: MarketId) -> Precondition {
        match &self.if_match {
            None | Some(Tags::Any) => Precondition::Any,
            Some(Tags::List(tags)) => Precondition::Versions(
                tags.iter()
                    .filter(|tag| !tag.weak)
                    .filter_map(|tag| version_of(tag, id))
                    .collect(),
            ),
        }
    }

    /// Whether `If-None-Match` matches `market` as it is now (weak comparison): a 304.
    pub fn not_modified(&self, market: &Market) -> bool {
        match &self.if_none_match {
            None => false,
            Some(Tags::Any) => true,
            Some(Tags::List(tags)) => tags
                .iter()
                .any(|tag| version_of(tag, market.id) == Some(market.version)),
        }
    }
}

impl FromRequest for Conditions {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let headers = req.headers();
        ready(Ok(Self {
            if_match: Tags::of(headers, &IF_MATCH),
            if_none_match: Tags::of(headers, &IF_NONE_MATCH),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(text: &str) -> Vec<(bool, String)> {
        parse_list(text)
            .into_iter()
            .map(|tag| (tag.weak, tag.opaque))
            .collect()
    }

    #[test]
    fn tag_lists_are_read_up_to_the_first_fault() {
        assert_eq!(
            tags(r#""a", W/"b",, "c,d""#),
            [
                (false, "a".to_owned()),
                (true, "b".to_owned()),
                (false, "c,d".to_owned())
            ]
        );
        assert_eq!(tags(r#""a", b, "c""#), [(false, "a".to_owned())]);
        assert!(tags(r#""unterminated"#).is_empty());
        assert!(tags("").is_empty());
    }

    fn conditions(if_match: &str) -> Conditions {
        let request = actix_web::test::TestRequest::default()
            .insert_header((IF_MATCH, if_match))
            .insert_header((IF_NONE_MATCH, if_match))
            .to_http_request();
        Conditions::from_request(&request, &mut Payload::None)
            .into_inner()
            .unwrap()
    }

    #[test]
    fn if_match_names_versions_of_this_market_only_and_strongly() {
        let id = MarketId::new();
        let other = MarketId::new();
        let listed = conditions(&format!(r#""{id}.3", W/"{id}.4", "{other}.5", "{id}.x""#));
        assert_eq!(listed.precondition(id), Precondition::Versions(vec![3]));
        assert_eq!(conditions("*").precondition(id), Precondition::Any);
        assert_eq!(
            conditions("garbage").precondition(id),
            Precondition::Versions(Vec::new())
        );
        assert_eq!(Conditions::default().precondition(id), Precondition::Any);
    }
}
