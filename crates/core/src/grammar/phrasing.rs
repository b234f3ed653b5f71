//! Facts as a person would write them, and a few ways of stating one that do not start with
//! "I": "I'm Maria" is "User's name is Maria", "I'm 34" is "User is 34 years old", "my favourite
//! colour is green now, not blue" is "User's favourite colour is green", "a daughter called Lena,
//! she is 6" is "a daughter called Lena, who is 6 years old", and a plan the user shares ("we're
//! planning a trip to Lisbon") is the user's own.

use super::words::{bare, words};

/// Words after "we're" or "we are" that make the clause a plan the user shares; "we live in
/// Oslo" stays unread (it may be about anyone the user lives with).
const SHARED_PLAN_VERBS: &[&str] = &[
    "planning",
    "going",
    "moving",
    "flying",
    "travelling",
    "traveling",
    "visiting",
    "expecting",
    "getting",
    "heading",
    "leaving",
    "driving",
    "staying",
    "hoping",
    "thinking",
];

/// Endings and words of nationalities, beliefs and diets, which "I'm ..." names as often as a
/// name: "I'm Italian", "I'm Catholic", "I'm Vegan".
const NOT_A_NAME_ENDINGS: &[&str] = &["an", "ese", "ish", "ch", "ic", "ist", "ian", "i"];
const NOT_A_NAME: &[&str] = &[
    "greek", "swiss", "thai", "muslim", "hindu", "sikh", "jewish", "here", "back", "home", "ok", "okay", "fine",
    "good", "done", "sorry",
];

/// "We're planning a trip to Lisbon" -> "I'm planning a trip to Lisbon"; "we'll fly on Monday"
/// -> "I'll fly on Monday". `None` for any other clause.
pub(super) fn shared_plan_as_first_person(tokens: &[String], lower: &[String]) -> Option<Vec<String>> {
    let word = |idx: usize| lower.get(idx).map_or("", String::as_str);
    let (replacement, consumed) = match (word(0), word(1)) {
        ("we're", next) if SHARED_PLAN_VERBS.contains(&next) => (words(&["I'm"]), 1),
        ("we", "are") if SHARED_PLAN_VERBS.contains(&word(2)) => (words(&["I", "am"]), 2),
        ("we'll", next) if !next.is_empty() => (words(&["I'll"]), 1),
        ("we", "will") if !word(2).is_empty() => (words(&["I", "will"]), 2),
        _ => return None,
    };
    let mut rewritten = replacement;
    rewritten.extend_from_slice(&tokens[consumed..]);
    Some(rewritten)
}

/// "I'm Maria" -> "User's name is Maria"; "I am 34" -> "User is 34 years old". `None` for any
/// other clause.
pub(super) fn name_or_age(tokens: &[String], lower: &[String]) -> Option<String> {
    let rest = match lower.first()?.as_str() {
        "i'm" | "im" => &tokens[1..],
        "i" if lower.get(1).is_some_and(|word| word == "am") => &tokens[2..],
        _ => return None,
    };
    let bare_rest: Vec<String> = rest.iter().map(|token| bare(token)).collect();
    if let [number] = bare_rest.as_slice()
        && let Ok(age) = number.parse::<u32>()
    {
        return (1..=120).contains(&age).then(|| format!("User is {age} years old"));
    }
    let is_name_word = |token: &String, lower: &String| {
        let word = token.trim_matches(|ch: char| !ch.is_alphanumeric());
        word.chars().next().is_some_and(char::is_uppercase)
            && word.chars().all(|ch| ch.is_alphabetic() || ch == '-' || ch == '\'')
            && word.chars().count() >= 2
            && !NOT_A_NAME.contains(&lower.as_str())
            && !NOT_A_NAME_ENDINGS.iter().any(|ending| lower.ends_with(ending))
    };
    let is_name =
        (1..=2).contains(&rest.len()) && rest.iter().zip(&bare_rest).all(|(token, lower)| is_name_word(token, lower));
    let name: Vec<&str> = rest.iter().map(|token| token.trim_matches(|ch: char| !ch.is_alphanumeric())).collect();
    is_name.then(|| format!("User's name is {}", name.join(" ")))
}

/// A finished fact tidied: a correction's tail ("green now, not blue") and a trailing "now"
/// dropped; "she is 6" after a comma read as "who is 6 years old".
pub(super) fn tidy(fact: String) -> String {
    let mut fact = fact;
    if let Some(cut) = fact.rfind(", not ") {
        let tail_words = fact[cut + 6..].split_whitespace().count();
        if (1..=4).contains(&tail_words) && fact[..cut].split_whitespace().count() >= 3 {
            fact.truncate(cut);
        }
    }
    if let Some(kept) = fact.strip_suffix(" now")
        && kept.split_whitespace().count() >= 3
    {
        fact = kept.trim_end_matches(',').to_owned();
    }
    for (pronoun, relative) in [
        (", she is ", ", who is "),
        (", he is ", ", who is "),
        (", she's ", ", who is "),
        (", he's ", ", who is "),
        (", they are ", ", who are "),
    ] {
        if let Some(at) = fact.find(pronoun) {
            let value = fact[at + pronoun.len()..].to_owned();
            let is_age = !value.is_empty() && value.chars().all(|ch| ch.is_ascii_digit());
            fact = format!("{}{relative}{value}{}", &fact[..at], if is_age { " years old" } else { "" });
            break;
        }
    }
    fact
}
