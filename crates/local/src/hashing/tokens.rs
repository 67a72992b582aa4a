//! Text to features: normalised words, and the character trigrams of each word.

/// Words too common to say anything about a text. Short on purpose: every word dropped here is
/// one a query can no longer match on. "will" is in because nearly every market asks "Will ...?".
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "has",
    "have", "if", "in", "is", "it", "its", "of", "on", "or", "than", "that", "the", "then",
    "there", "these", "this", "those", "to", "was", "were", "what", "which", "who", "will", "with",
    "would",
];

/// Marks the start and end of a word in its n-grams, so "rain" gives "<ra" and "in>", which a
/// word merely containing "rai" or "ain" does not.
const START: char = '<';
const END: char = '>';

/// How many characters an n-gram has.
const NGRAM: usize = 3;

/// The words of `text`: lower-cased runs of letters and digits (any script), stop words dropped.
/// A text made only of stop words keeps them, so "Who?" still differs from "The?".
pub(super) fn words(text: &str) -> Vec<String> {
    let all: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect();
    let content: Vec<String> = all
        .iter()
        .filter(|word| !STOP_WORDS.contains(&word.as_str()))
        .cloned()
        .collect();
    if content.is_empty() { all } else { content }
}

/// The character trigrams of `word` padded with boundary markers: "rain" gives "<ra", "rai",
/// "ain", "in>"; a one-letter word gives its single padded trigram.
pub(super) fn ngrams(word: &str) -> Vec<String> {
    let padded: Vec<char> = std::iter::once(START)
        .chain(word.chars())
        .chain(std::iter::once(END))
        .collect();
    padded
        .windows(NGRAM)
        .map(|window| window.iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lower_cased_split_on_punctuation_and_stop_words_go() {
        assert_eq!(
            words("Will it RAIN in Paris, tomorrow? (2026-05-01)"),
            ["rain", "paris", "tomorrow", "2026", "05", "01"]
        );
        assert_eq!(words("Zürich's Ölpreis"), ["zürich", "s", "ölpreis"]);
    }

    #[test]
    fn a_text_of_stop_words_only_keeps_them() {
        assert_eq!(words("The Who?"), ["the", "who"]);
        assert!(words("  ?! ").is_empty());
        assert!(words("").is_empty());
    }

    #[test]
    fn ngrams_are_padded_trigrams() {
        assert_eq!(ngrams("rain"), ["<ra", "rai", "ain", "in>"]);
        assert_eq!(ngrams("é"), ["<é>"]);
        assert_eq!(ngrams("ab"), ["<ab", "ab>"]);
    }
}
