//! Splitting a message into sentences, and a sentence into clauses.

use super::facts::is_verb_form;
use super::lexicon::{ABBREVIATIONS, CLAUSE_CONJUNCTIONS, LEAD_INS, TITLES};
use super::person::is_first_person_subject;
use super::words::{lower_words, phrase_len, starts_with_phrase};

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sentence {
    pub(super) text: String,
    pub(super) is_question: bool,
}

pub(super) fn split_sentences(content: &str) -> Vec<Sentence> {
    let chars: Vec<char> = content.chars().collect();
    let mut sentences = Vec::new();
    let mut current = String::new();
    let mut idx = 0;
    while idx < chars.len() {
        let ch = chars[idx];
        // "I joined a club - it's great": a dash between words parts two sentences.
        if is_dash_break(&chars, idx) {
            finish_sentence(&mut sentences, &mut current, false);
            idx += 1;
            continue;
        }
        let ends_sentence = if ch == '.' { dot_ends_sentence(&chars, idx, &current) } else { is_terminator(ch) };
        if !ends_sentence {
            current.push(ch);
            idx += 1;
            continue;
        }
        // "?!" and "..." end one sentence, not several empty ones.
        let mut is_question = false;
        while let Some(&next) = chars.get(idx) {
            if next != '.' && !is_terminator(next) {
                break;
            }
            is_question |= next == '?';
            idx += 1;
        }
        finish_sentence(&mut sentences, &mut current, is_question);
    }
    finish_sentence(&mut sentences, &mut current, false);
    sentences
}

/// An em dash anywhere, or a hyphen or en dash with space on both sides (not "well-known").
fn is_dash_break(chars: &[char], idx: usize) -> bool {
    let spaced = |at: Option<usize>| at.and_then(|at| chars.get(at)).is_some_and(|ch| ch.is_whitespace());
    match chars[idx] {
        '\u{2014}' => true,
        '-' | '\u{2013}' => spaced(idx.checked_sub(1)) && spaced(Some(idx + 1)),
        _ => false,
    }
}

fn is_terminator(ch: char) -> bool {
    matches!(ch, '!' | '?' | ';' | '\n' | '\r' | '\u{2026}')
}

fn finish_sentence(sentences: &mut Vec<Sentence>, current: &mut String, is_question: bool) {
    let text = current.trim();
    if !text.is_empty() {
        sentences.push(Sentence { text: text.to_owned(), is_question });
    }
    current.clear();
}

fn dot_ends_sentence(chars: &[char], dot_idx: usize, before: &str) -> bool {
    // "5.5", "example.com", the inner dots of "e.g.": a dot glued to the next word is part of it.
    let next = chars.get(dot_idx + 1).copied();
    if next.is_some_and(char::is_alphanumeric) {
        return false;
    }
    let last_word = before.split_whitespace().next_back().unwrap_or_default();
    let last_word = last_word.trim_start_matches(|ch: char| !ch.is_alphanumeric()).to_lowercase();
    if TITLES.contains(&last_word.as_str()) {
        return false;
    }
    if ABBREVIATIONS.contains(&last_word.as_str()) {
        // "Acme Inc. It is ..." ends a sentence; "6 a.m. every day" does not.
        let next_letter = chars[dot_idx + 1..].iter().find(|ch| !ch.is_whitespace());
        return next_letter.is_none_or(|ch| ch.is_uppercase());
    }
    // An initial, as in "J. R. R. Tolkien"; the pronoun "I" is not one.
    let mut letters = last_word.chars();
    if let (Some(letter), None) = (letters.next(), letters.next()) {
        return !letter.is_alphabetic() || letter == 'i';
    }
    true
}

/// Splits a sentence where a new first-person clause starts after a comma or a conjunction, as in
/// "I live in Paris, and I work at Acme". "My wife and I live here" stays whole: what comes before
/// "and I" must stand alone as a statement.
pub(super) fn split_clauses(sentence: &str) -> Vec<Vec<String>> {
    let tokens: Vec<String> = sentence.split_whitespace().map(str::to_owned).collect();
    let lower = lower_words(&tokens);
    let mut clauses = Vec::new();
    let mut start = 0;
    for idx in 1..tokens.len() {
        // "but now I live in Rome": a time word may stand between the conjunction and "I".
        let conjunction_idx = match lower[idx - 1].as_str() {
            "now" | "then" | "also" | "still" if idx >= 2 => idx - 2,
            _ => idx - 1,
        };
        let after_conjunction =
            conjunction_idx > start && CLAUSE_CONJUNCTIONS.contains(&lower[conjunction_idx].as_str());
        // "I'm learning Spanish because my partner is from Madrid": a clause of its own about
        // someone the user knows.
        let about_theirs = after_conjunction && lower[idx] == "my" && stands_alone(&lower[idx..]);
        if !is_first_person_subject(&lower[idx]) && !about_theirs {
            continue;
        }
        let after_comma = tokens[idx - 1].ends_with(',');
        if !after_conjunction && !after_comma {
            continue;
        }
        let cut = if after_conjunction { conjunction_idx } else { idx };
        if cut > start && stands_alone(&lower[start..cut]) {
            clauses.push(tokens[start..cut].to_vec());
            // The conjunction before "my" only joined the clauses ("because my partner ...").
            start = if about_theirs { idx } else { cut };
        }
    }
    clauses.push(tokens[start..].to_vec());
    clauses.retain(|clause| !clause.is_empty());
    clauses.into_iter().flat_map(|clause| split_at_pronoun(&clause)).collect()
}

/// "My sister lives in Toronto and she's a dentist" -> "My sister lives in Toronto", "My sister
/// is a dentist": a clause about someone the user knows, continued with a pronoun for them.
fn split_at_pronoun(tokens: &[String]) -> Vec<Vec<String>> {
    let lower = lower_words(tokens);
    let whole = vec![tokens.to_vec()];
    if lower.first().is_none_or(|first| first != "my") {
        return whole;
    }
    let Some(verb_idx) = (1..lower.len()).find(|&idx| is_verb_form(&lower[idx])) else { return whole };
    let Some(pronoun_idx) = (verb_idx + 2..lower.len())
        .find(|&idx| lower[idx - 1] == "and" && matches!(lower[idx].as_str(), "she's" | "he's" | "she" | "he"))
    else {
        return whole;
    };
    if pronoun_idx + 1 >= lower.len() {
        return whole;
    }
    let mut continued: Vec<String> = tokens[..verb_idx].to_vec();
    if lower[pronoun_idx].ends_with("'s") {
        continued.push("is".to_owned());
    }
    continued.extend_from_slice(&tokens[pronoun_idx + 1..]);
    vec![tokens[..pronoun_idx - 1].to_vec(), continued]
}

fn stands_alone(lower: &[String]) -> bool {
    let body = &lower[lead_in_len(lower)..];
    match body.first().map(String::as_str) {
        Some(first) if is_first_person_subject(first) => true,
        Some("my") => body.iter().any(|word| matches!(word.as_str(), "is" | "are" | "was" | "were")),
        _ => false,
    }
}

/// How many leading words are greetings and discourse markers ("Well, actually, by the way").
pub(super) fn lead_in_len(lower: &[String]) -> usize {
    let mut len = 0;
    while let Some(phrase) = LEAD_INS.iter().find(|phrase| starts_with_phrase(&lower[len..], phrase)) {
        len += phrase_len(phrase);
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sentences_on_terminators() {
        let sentences = split_sentences("Is it 3.5? Yes! I live at example.com... e.g. here;done\nok");
        let expected = [
            ("Is it 3.5", true),
            ("Yes", false),
            ("I live at example.com", false),
            ("e.g. here", false),
            ("done", false),
            ("ok", false),
        ];
        let expected: Vec<Sentence> = expected
            .iter()
            .map(|(text, is_question)| Sentence { text: (*text).to_owned(), is_question: *is_question })
            .collect();
        assert_eq!(sentences, expected);
    }
}
