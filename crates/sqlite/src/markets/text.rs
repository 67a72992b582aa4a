//! Full-text search over the `markets_search` FTS5 table: user input becomes an FTS5 expression
//! that can never be a syntax error, and bm25 ranks become scores in `0..=1`.
//!
//! The input is read like PostgreSQL's `websearch_to_tsquery`: words must all match, `"quoted
//! words"` match as a phrase, `or` between two terms matches either, `-word` excludes.

/// The column weights given to `bm25`: a name match counts ten times a description match.
pub(super) const NAME_WEIGHT: f64 = 10.0;
/// See [`NAME_WEIGHT`].
pub(super) const DESCRIPTION_WEIGHT: f64 = 1.0;

/// One term of the query: a word or a phrase, as an FTS5 string.
enum Term {
    Include(String),
    Exclude(String),
    Or,
}

/// `words` as one FTS5 string (a phrase if several). Only letters and digits are kept: the
/// tokenizer splits on everything else anyway, and no quote can reach the expression.
fn quoted(words: &str) -> Option<String> {
    let tokens: Vec<&str> = words
        .split(|c: char| !c.is_alphanumeric())
        .filter(|token| !token.is_empty())
        .collect();
    (!tokens.is_empty()).then(|| format!("\"{}\"", tokens.join(" ")))
}

fn terms(query: &str) -> Vec<Term> {
    let mut terms = Vec::new();
    let mut rest = query.trim_start();
    while !rest.is_empty() {
        let (chunk, tail, phrase) = match rest.strip_prefix('"') {
            Some(inner) => {
                let end = inner.find('"').unwrap_or(inner.len());
                (&inner[..end], inner.get(end + 1..).unwrap_or(""), true)
            }
            None => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], &rest[end..], false)
            }
        };
        rest = tail.trim_start();
        if !phrase && chunk.eq_ignore_ascii_case("or") {
            terms.push(Term::Or);
        } else if let Some(excluded) = chunk.strip_prefix('-').filter(|_| !phrase) {
            terms.extend(quoted(excluded).map(Term::Exclude));
        } else {
            terms.extend(quoted(chunk).map(Term::Include));
        }
    }
    terms
}

/// The FTS5 `MATCH` expression for `query`, or `None` if nothing in it can match (no words, or
/// only excluded ones).
pub(super) fn match_expression(query: &str) -> Option<String> {
    let mut expression = String::new();
    let mut excluded = Vec::new();
    let mut or_pending = false;
    for term in terms(query) {
        match term {
            Term::Or => or_pending = !expression.is_empty(),
            Term::Exclude(term) => excluded.push(term),
            Term::Include(term) => {
                if !expression.is_empty() {
                    expression.push_str(if or_pending { " OR " } else { " AND " });
                }
                expression.push_str(&term);
                or_pending = false;
            }
        }
    }
    if expression.is_empty() {
        return None;
    }
    if !excluded.is_empty() {
        // NOT binds tighter than AND and OR in FTS5: bracket the included part.
        expression = format!("({expression}) NOT ({})", excluded.join(" OR "));
    }
    Some(expression)
}

/// A score in `0..1` from a bm25 rank (FTS5's `bm25()` is negative, lower is better, and never
/// 0 for a match): `r / (r + 1)` of the positive relevance `r`, so better matches score higher
/// and every match scores above 0.
pub(super) fn score(rank: f64) -> f32 {
    let relevance = (-rank).max(0.0);
    (relevance / (relevance + 1.0)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_safe_expressions() {
        for (query, expression) in [
            ("rain", Some(r#""rain""#)),
            ("Rain  weather", Some(r#""Rain" AND "weather""#)),
            (r#""will it" rain"#, Some(r#""will it" AND "rain""#)),
            ("rain or snow", Some(r#""rain" OR "snow""#)),
            ("rain -snow", Some(r#"("rain") NOT ("snow")"#)),
            (r#"it's "100k""#, Some(r#""it s" AND "100k""#)),
            (
                r#"NEAR(a b) "unclosed"#,
                Some(r#""NEAR a" AND "b" AND "unclosed""#),
            ),
            ("or -rain", None),
            ("?!* ()", None),
        ] {
            assert_eq!(match_expression(query).as_deref(), expression, "{query}");
        }
    }

    #[test]
    fn scores_grow_with_relevance_within_zero_and_one() {
        let scores: Vec<f32> = [-0.000_001, -0.5, -3.0, -40.0].map(score).to_vec();
        assert!(scores.iter().all(|s| *s > 0.0 && *s < 1.0), "{scores:?}");
        assert!(
            scores.windows(2).all(|pair| pair[0] < pair[1]),
            "{scores:?}"
        );
    }
}
