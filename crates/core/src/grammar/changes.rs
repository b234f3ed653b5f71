//! Changes restated as the state they lead to: "I moved to Berlin" is "User lives in Berlin".

use super::clauses::expand_possessive_copula;
use super::lexicon::NOT_A_PLACE;
use super::person::third_person;
use super::words::{is_adverb, starts_with_phrase, words};

/// A first-person clause (or a clause to remember or forget) in the third person, with changes
/// restated as the state they lead to.
pub(super) fn restate(tokens: &[String], lower: &[String]) -> Vec<String> {
    let restated = no_longer_form(tokens, lower)
        .or_else(|| changed_possession_form(tokens, lower))
        .or_else(|| moved_to_form(tokens, lower))
        .or_else(|| new_job_form(tokens, lower));
    match restated {
        Some(tokens) => third_person(&tokens),
        None if lower.first().is_some_and(|word| word == "my") => {
            third_person(&expand_possessive_copula(tokens, lower))
        }
        None => third_person(tokens),
    }
}

/// "I don't drink coffee anymore" -> "I no longer drink coffee"; "I'm not vegan anymore" -> "I am
/// no longer vegan".
fn no_longer_form(tokens: &[String], lower: &[String]) -> Option<Vec<String>> {
    let n_trailing = if lower.last().is_some_and(|word| word == "anymore") {
        1
    } else if lower.ends_with(&["any".to_owned(), "more".to_owned()]) {
        2
    } else {
        return None;
    };
    let body_end = tokens.len() - n_trailing;
    let (mut restated, consumed) = match lower[0].as_str() {
        "i'm" | "im" if lower.get(1).is_some_and(|word| word == "not") => (words(&["I", "am", "no", "longer"]), 2),
        "i" => {
            let verb_idx = 1 + lower[1..].iter().take_while(|word| is_adverb(word)).count();
            let negation = &lower[verb_idx.min(lower.len())..];
            let mut kept = tokens[..verb_idx].to_vec();
            if starts_with_phrase(negation, "don't") || starts_with_phrase(negation, "dont") {
                kept.extend(words(&["no", "longer"]));
                (kept, verb_idx + 1)
            } else if starts_with_phrase(negation, "do not") {
                kept.extend(words(&["no", "longer"]));
                (kept, verb_idx + 2)
            } else if starts_with_phrase(negation, "am not") {
                kept.extend(words(&["am", "no", "longer"]));
                (kept, verb_idx + 2)
            } else {
                return None;
            }
        }
        _ => return None,
    };
    if consumed >= body_end {
        return None;
    }
    restated.extend_from_slice(&tokens[consumed..body_end]);
    Some(restated)
}

/// The index of the main verb after "I" or "I have"/"I've" and any adverbs.
fn perfect_verb_idx(lower: &[String]) -> Option<usize> {
    let mut idx = match lower.first()?.as_str() {
        "i" if lower.get(1).is_some_and(|word| word == "have") => 2,
        "i" => 1,
        "i've" | "ive" => 1,
        _ => return None,
    };
    while lower.get(idx).is_some_and(|word| is_adverb(word)) {
        idx += 1;
    }
    (idx < lower.len()).then_some(idx)
}

/// "I just started a new job as a teacher" -> "I work as a teacher"; "I got a job at Acme" -> "I
/// work at Acme": the job the user has now.
fn new_job_form(tokens: &[String], lower: &[String]) -> Option<Vec<String>> {
    let verb_idx = perfect_verb_idx(lower)?;
    if !matches!(lower[verb_idx].as_str(), "started" | "got" | "found" | "landed" | "began" | "took") {
        return None;
    }
    let mut idx = verb_idx + 1;
    if matches!(lower.get(idx)?.as_str(), "a" | "my") {
        idx += 1;
    }
    if lower.get(idx)? == "new" {
        idx += 1;
    }
    if lower.get(idx)? != "job" || !matches!(lower.get(idx + 1)?.as_str(), "as" | "at") || lower.len() < idx + 3 {
        return None;
    }
    let mut restated = words(&["I", "work"]);
    restated.extend_from_slice(&tokens[idx + 1..]);
    Some(restated)
}

/// "I changed my email to x" -> "my email is x".
fn changed_possession_form(tokens: &[String], lower: &[String]) -> Option<Vec<String>> {
    let verb_idx = perfect_verb_idx(lower)?;
    if !matches!(lower[verb_idx].as_str(), "changed" | "switched" | "updated") || lower.get(verb_idx + 1)? != "my" {
        return None;
    }
    let owner_start = verb_idx + 2;
    let to_idx = owner_start + lower[owner_start..].iter().position(|word| word == "to")?;
    if to_idx == owner_start || to_idx + 1 >= tokens.len() {
        return None;
    }
    let mut restated = words(&["my"]);
    restated.extend_from_slice(&tokens[owner_start..to_idx]);
    restated.push("is".to_owned());
    restated.extend_from_slice(&tokens[to_idx + 1..]);
    Some(restated)
}

/// Words of a time in the recent past: "last month", "a few weeks ago", "recently".
const RECENTLY: &[&str] = &[
    "last",
    "this",
    "week",
    "month",
    "year",
    "weekend",
    "recently",
    "yesterday",
    "earlier",
    "just",
    "a",
    "an",
    "one",
    "two",
    "three",
    "four",
    "few",
    "couple",
    "of",
    "days",
    "weeks",
    "months",
    "ago",
];

/// "I moved to Berlin" -> "I live in Berlin", when nothing but the place (and maybe a recent
/// time: "last month") follows: "I moved to Berlin in 2019" is history, and stays as said.
fn moved_to_form(tokens: &[String], lower: &[String]) -> Option<Vec<String>> {
    let verb_idx = perfect_verb_idx(lower)?;
    if !matches!(lower[verb_idx].as_str(), "moved" | "relocated") || lower.get(verb_idx + 1)? != "to" {
        return None;
    }
    // A recent move is where the user lives now: "I moved to Hamburg last month".
    let place_end = (verb_idx + 3..tokens.len())
        .find(|&idx| lower[idx..].iter().all(|word| RECENTLY.contains(&word.as_str())))
        .unwrap_or(tokens.len());
    let place = &tokens[verb_idx + 2..place_end];
    let place_is_plain = !place.is_empty()
        && place.len() <= 4
        && lower[verb_idx + 2..place_end].iter().all(|word| !NOT_A_PLACE.contains(&word.as_str()));
    if !place_is_plain {
        return None;
    }
    let mut restated = words(&["I", "live", "in"]);
    restated.extend_from_slice(place);
    Some(restated)
}
