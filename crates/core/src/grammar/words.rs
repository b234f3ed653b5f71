//! Words: tokens compared lowercase and bare, phrases matched at the start or end of a clause,
//! spellings standardised, and the keys facts are compared by.

use super::lexicon::{ADVERBS, FUNCTION_WORDS, IRREGULAR_PAST, PRESENT_ENDING_IN_ED, TOPIC_NOISE, VERBS_ENDING_IN_LY};

/// The exact-duplicate key of a fact: lowercase, apostrophes dropped ("User's" and "Users" are one
/// word), other punctuation a word break, whitespace collapsed. Letters of every script are kept.
pub fn normalise(fact: &str) -> String {
    let mut spaced = String::with_capacity(fact.len());
    for ch in fact.chars().flat_map(char::to_lowercase) {
        if ch.is_alphanumeric() || is_combining_mark(ch) {
            spaced.push(ch);
        } else if !is_apostrophe(ch) {
            spaced.push(' ');
        }
    }
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The words of `text` that carry meaning, as written and in order: a search's keywords.
pub fn keywords(text: &str) -> Vec<&str> {
    text.split(|ch: char| !ch.is_alphanumeric() && !is_apostrophe(ch))
        .filter(|word| {
            let word = bare(word);
            !word.is_empty() && !is_function_word(&word) && !QUESTION_WORDS.contains(&word.as_str())
        })
        .collect()
}

/// Words that ask rather than say: a query's "what did ... do" names nothing to look for.
const QUESTION_WORDS: &[&str] =
    &["what", "when", "where", "who", "whom", "whose", "which", "why", "how", "did", "does", "do"];

/// Lowercase, stemmed words that carry meaning: "User's two cats" -> ["two", "cat"].
pub fn content_words(text: &str) -> Vec<String> {
    text.split(|ch: char| !ch.is_alphanumeric() && !is_apostrophe(ch))
        .map(bare)
        .filter(|word| !word.is_empty() && !is_function_word(word) && !TOPIC_NOISE.contains(&word.as_str()))
        .map(|word| stem(&word))
        .collect()
}

fn stem(lower: &str) -> String {
    let word = standard_spelling(lower.strip_suffix("'s").unwrap_or(lower));
    if word.len() > 4 && word.ends_with("ies") {
        return format!("{}y", &word[..word.len() - 3]);
    }
    if word.len() > 3 && word.ends_with('s') && !["ss", "us", "is"].iter().any(|ending| word.ends_with(ending)) {
        return word[..word.len() - 1].to_owned();
    }
    word
}

pub(super) fn is_past(lower: &str) -> bool {
    IRREGULAR_PAST.contains(&lower)
        || (lower.len() > 3 && lower.ends_with("ed") && !PRESENT_ENDING_IN_ED.contains(&lower))
}

pub(super) fn is_adverb(lower: &str) -> bool {
    ADVERBS.contains(&lower) || (lower.len() > 4 && lower.ends_with("ly") && !VERBS_ENDING_IN_LY.contains(&lower))
}

pub(super) fn finish_fact(tokens: &[String]) -> String {
    trim_trailing_punctuation(tokens.join(" ").trim()).to_owned()
}

pub(super) fn trim_trailing_punctuation(text: &str) -> &str {
    text.trim_end_matches(['.', ',', '!', '?', ';', ':', '\u{2026}', '"', '\u{201D}', ')', ']', '*', '_', ' ', '-'])
}

/// A token lowercased, with surrounding punctuation and quotes removed; inner apostrophes stay.
pub(super) fn bare(token: &str) -> String {
    token
        .trim_matches(|ch: char| !ch.is_alphanumeric())
        .to_lowercase()
        .replace(['\u{2019}', '\u{2018}', '\u{02BC}'], "'")
}

pub(super) fn lower_words(tokens: &[String]) -> Vec<String> {
    tokens.iter().map(|token| bare(token)).collect()
}

pub(super) fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|word| (*word).to_owned()).collect()
}

pub(super) fn phrase_len(phrase: &str) -> usize {
    phrase.split(' ').count()
}

pub(super) fn starts_with_phrase(lower: &[String], phrase: &str) -> bool {
    let mut n_matched = 0;
    for (idx, expected) in phrase.split(' ').enumerate() {
        if lower.get(idx).is_none_or(|word| word != expected) {
            return false;
        }
        n_matched += 1;
    }
    n_matched > 0
}

pub(super) fn starts_with_any(lower: &[String], phrases: &[&str]) -> bool {
    phrases.iter().any(|phrase| starts_with_phrase(lower, phrase))
}

pub(super) fn ends_with_phrase(lower: &[String], phrase: &str) -> bool {
    let len = phrase_len(phrase);
    lower.len() > len && starts_with_phrase(&lower[lower.len() - len..], phrase)
}

pub(super) fn is_function_word(lower: &str) -> bool {
    FUNCTION_WORDS.contains(&lower)
}

fn is_apostrophe(ch: char) -> bool {
    matches!(ch, '\'' | '\u{2019}' | '\u{2018}' | '\u{02BC}')
}

/// Combining diacritics, kept by [`normalise`] so a decomposed "é" stays one letter.
fn is_combining_mark(ch: char) -> bool {
    matches!(ch, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// British and American spellings as one word, so "favorite color" and "favourite colour" match.
pub(super) fn standard_spelling(lower: &str) -> String {
    let standard = match lower {
        "color" => "colour",
        "colors" => "colours",
        "favorite" | "fave" | "fav" => "favourite",
        "favorites" => "favourites",
        "flavor" => "flavour",
        "flavors" => "flavours",
        "humor" => "humour",
        "neighbor" => "neighbour",
        "neighbors" => "neighbours",
        "theater" => "theatre",
        "center" => "centre",
        "gray" => "grey",
        "behavior" => "behaviour",
        "favor" => "favour",
        _ => lower,
    };
    standard.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_s_keywords_leave_out_what_asks() {
        assert_eq!(keywords("What did Caroline research?"), ["Caroline", "research"]);
        assert_eq!(keywords("When is the user's flight to Tokyo"), ["flight", "Tokyo"], "\"user\" is in every fact");
        assert!(keywords("what is it?").is_empty());
    }

    #[test]
    fn normalises_for_exact_duplicates() {
        assert_eq!(normalise("User's favourite colour is Blue!"), "users favourite colour is blue");
        assert_eq!(normalise("  User   lives\tin  São Paulo. "), "user lives in são paulo");
        assert_eq!(normalise("ÜBER-cool, naïve café"), "über cool naïve café");
        assert_eq!(normalise("User’s cat"), normalise("User's cat"));
        assert_eq!(normalise("用户 住在 东京。"), "用户 住在 东京");
        assert_eq!(normalise("e\u{301}te\u{301}"), "e\u{301}te\u{301}");
        assert_eq!(normalise("?!"), "");
    }
}
