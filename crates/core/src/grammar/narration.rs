//! How people tell what they did, read as first-person statements: a time phrase before the
//! subject ("Last week I went to a parade" is "I went to a parade last week", so the date stays
//! with the fact), the subject left out ("Lost my job yesterday" is "I lost my job yesterday"),
//! and "we" for what the user did or has with others ("We got another cat" is "I got another
//! cat": the user's memory of it is the same).

use super::person::is_first_person_subject;
use super::words::{bare, is_adverb, is_past, lower_words};

/// `tokens` as a first-person statement when they tell one in another order; else unchanged.
pub(super) fn as_first_person(tokens: Vec<String>) -> Vec<String> {
    let tokens = time_phrase_moved_to_end(tokens);
    let tokens = value_now(tokens);
    let lower = lower_words(&tokens);
    if let Some(told) = we_as_i(&tokens, &lower) {
        return told;
    }
    match elided_subject(&lower) {
        // The verb moves into the middle of the sentence, so it loses its capital.
        Some(subject) => std::iter::once(subject.to_owned()).chain(lowercase_first(tokens)).collect(),
        None => tokens,
    }
}

/// "My favourite band used to be Coldplay, but now it's Radiohead" -> "My favourite band is
/// Radiohead": the value it has now.
fn value_now(tokens: Vec<String>) -> Vec<String> {
    let lower = lower_words(&tokens);
    let bare_lower: Vec<String> = lower.iter().map(|word| bare(word)).collect();
    let Some(used_idx) = bare_lower.windows(3).position(|window| window == ["used", "to", "be"]) else {
        return tokens;
    };
    let now_value = (used_idx + 3..bare_lower.len()).find_map(|idx| {
        let rest: Vec<&str> = bare_lower[idx..].iter().map(String::as_str).collect();
        match rest.as_slice() {
            ["but", "now", "it's" | "its", _, ..] | ["now", "it's" | "its", _, ..] => {
                Some(idx + rest.iter().position(|word| matches!(*word, "it's" | "its")).unwrap_or(0) + 1)
            }
            ["but", "now", "it", "is", _, ..] | ["now", "it", "is", _, ..] => {
                Some(idx + rest.iter().position(|word| *word == "is").unwrap_or(0) + 1)
            }
            _ => None,
        }
    });
    match now_value {
        Some(value_idx) if used_idx > 0 => {
            let mut told = tokens[..used_idx].to_vec();
            told.push("is".to_owned());
            told.extend(tokens[value_idx..].iter().filter(|token| bare(token) != "now").cloned());
            told
        }
        _ => tokens,
    }
}

fn lowercase_first(mut tokens: Vec<String>) -> Vec<String> {
    if let Some(first) = tokens.first_mut() {
        *first = first.to_lowercase();
    }
    tokens
}

/// "Last Friday, I went to a meeting" -> "I went to a meeting last Friday"; "Since we last spoke,
/// I moved" -> "I moved" (it dates nothing). Only when a first-person statement follows: in "Last
/// week was wild" the time is the subject.
fn time_phrase_moved_to_end(tokens: Vec<String>) -> Vec<String> {
    let lower = lower_words(&tokens);
    let Some((len, dates)) = time_phrase_len(&lower) else { return tokens };
    let rest = &lower[len..];
    let tells = rest.first().is_some_and(|first| starts_statement(first)) || elided_subject(rest).is_some();
    if !tells || rest.len() < 2 {
        return tokens;
    }
    let mut moved: Vec<String> = tokens[len..].to_vec();
    if !dates {
        return moved;
    }
    let mut phrase: Vec<String> =
        tokens[..len].iter().map(|token| spelled_out(&token.trim_end_matches(',').to_lowercase())).collect();
    // At the end of the first part of the sentence: "I got hurt last month, which ..." keeps the
    // date with the statement when what follows the comma is dropped.
    let at = match moved.iter().position(|token| token.ends_with(',')) {
        Some(comma_idx) => {
            moved[comma_idx].pop();
            if let Some(last) = phrase.last_mut() {
                last.push(',');
            }
            comma_idx + 1
        }
        None => moved.len(),
    };
    moved.splice(at..at, phrase.drain(..));
    moved
}

fn starts_statement(first: &str) -> bool {
    is_first_person_subject(first) || matches!(first, "my" | "we" | "we're" | "we've" | "our")
}

/// How many leading words name a time ("yesterday", "last week", "a few days ago", "this
/// morning"), and whether that time is a date (unlike "since we last spoke").
fn time_phrase_len(lower: &[String]) -> Option<(usize, bool)> {
    let word = |idx: usize| lower.get(idx).map_or(String::new(), |word| bare(word));
    let (first, second) = (word(0), word(1));
    if first == "since" && second == "we" && word(2) == "last" {
        return Some((4, false));
    }
    if matches!(first.as_str(), "yesterday" | "today" | "tonight" | "recently" | "lately") {
        return Some((1, true));
    }
    if first == "last" && second == "night" {
        return Some((2, true));
    }
    if matches!(first.as_str(), "last" | "this" | "next" | "past") && is_period(&second) {
        return Some((2, true));
    }
    if first == "the" && second == "other" && matches!(word(2).as_str(), "day" | "week") {
        return Some((3, true));
    }
    if first == "earlier" && matches!(second.as_str(), "today" | "tonight") {
        return Some((2, true));
    }
    // "two weeks ago", "a few days ago", "a couple of months ago"
    let ago = (1..=4).find(|&idx| word(idx) == "ago")?;
    let counted = lower[..ago].iter().map(|word| bare(word)).all(|word| {
        matches!(word.as_str(), "a" | "an" | "few" | "couple" | "of" | "several" | "one" | "two" | "three" | "four")
            || word.parse::<u32>().is_ok()
            || is_unit(&word)
    });
    (counted && is_unit(&word(ago - 1))).then_some((ago + 1, true))
}

fn is_unit(word: &str) -> bool {
    matches!(word, "day" | "days" | "week" | "weeks" | "month" | "months" | "year" | "years" | "while")
}

fn is_period(word: &str) -> bool {
    is_unit(word)
        || weekday(word).is_some()
        || matches!(word, "weekend" | "morning" | "afternoon" | "evening" | "summer" | "winter" | "spring" | "fall")
        || word == "autumn"
}

/// A weekday as people shorten it ("Fri"), spelled out.
fn weekday(word: &str) -> Option<&'static str> {
    Some(match word {
        "monday" | "mon" => "Monday",
        "tuesday" | "tue" | "tues" => "Tuesday",
        "wednesday" | "wed" => "Wednesday",
        "thursday" | "thu" | "thur" | "thurs" => "Thursday",
        "friday" | "fri" => "Friday",
        "saturday" | "sat" => "Saturday",
        "sunday" | "sun" => "Sunday",
        _ => return None,
    })
}

/// A word of a time phrase as the date resolver reads it: "Fri" is "Friday".
fn spelled_out(token: &str) -> String {
    weekday(&bare(token)).map_or_else(|| token.to_owned(), str::to_owned)
}

/// The subject a clause left out, when it opens with what the speaker did: "Took a trip to Rome"
/// ("I"), "Been reading a lot" ("I've"), "Gonna start a business" ("I'm"). Not when a pronoun
/// follows the verb ("Made me smile": something else did), and not for verbs of saying, thinking
/// and being, which open exclamations ("Thought so", "Was great").
fn elided_subject(lower: &[String]) -> Option<&'static str> {
    let verb_idx = lower.iter().position(|word| !matches!(word.as_str(), "just" | "finally" | "also" | "even"))?;
    let verb = bare(&lower[verb_idx]);
    let object = lower.get(verb_idx + 1).map(|word| bare(word))?;
    if lower.len() < verb_idx + 3 || matches!(object.as_str(), "me" | "you" | "it" | "us" | "that" | "this" | "so") {
        return None;
    }
    match verb.as_str() {
        "been" => Some("I've"),
        "gonna" => Some("I'm"),
        "was" | "were" | "said" | "thought" | "did" | "told" | "knew" | "felt" | "seemed" | "looked" | "sounded" => {
            None
        }
        verb if is_past(verb) => Some("I"),
        _ => None,
    }
}

/// "We got another cat" -> "I got another cat", "our" and "us" with it: what the user did or
/// has with others. Not for "we are" (a shared state, "we're both busy") nor modals (plans,
/// which `shared_plan_as_first_person` reads).
fn we_as_i(tokens: &[String], lower: &[String]) -> Option<Vec<String>> {
    let subject = match lower.first()?.as_str() {
        "we" => "I",
        "we've" => "I've",
        _ => return None,
    };
    let verb = lower[1..]
        .iter()
        .map(|word| bare(word))
        .find(|word| !is_adverb(word) && !matches!(word.as_str(), "all" | "both"))?;
    if matches!(verb.as_str(), "are" | "were" | "was" | "am" | "is") || super::lexicon::MODALS.contains(&verb.as_str())
    {
        return None;
    }
    let mut told = vec![subject.to_owned()];
    for (token, word) in tokens.iter().zip(lower).skip(1) {
        // "We all made our own pots": "all" and "both" qualify "we", not what was done.
        if told.len() == 1 && matches!(word.as_str(), "all" | "both") {
            continue;
        }
        let replacement = match bare(word).as_str() {
            "our" => Some("my"),
            "ours" => Some("mine"),
            "us" => Some("me"),
            "ourselves" => Some("myself"),
            _ => None,
        };
        told.push(match replacement {
            Some(replacement) => token.to_lowercase().replacen(&bare(word), replacement, 1),
            None => token.clone(),
        });
    }
    Some(told)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(text: &str) -> String {
        as_first_person(text.split_whitespace().map(str::to_owned).collect()).join(" ")
    }

    #[test]
    fn a_time_phrase_moves_after_the_statement() {
        assert_eq!(told("Last week I went to a parade"), "I went to a parade last week");
        assert_eq!(told("Last Fri, I took my kids to a workshop"), "I took my kids to a workshop last Friday");
        assert_eq!(told("A few days ago I got a cat"), "I got a cat a few days ago");
        assert_eq!(told("Since we last spoke, I moved to Rome"), "I moved to Rome");
        assert_eq!(told("Last month I got hurt, which hurt"), "I got hurt last month, which hurt");
        assert_eq!(told("Last week was wild"), "Last week was wild");
        assert_eq!(told("Yesterday the weather was nice"), "Yesterday the weather was nice");
    }

    #[test]
    fn a_left_out_subject_is_the_speaker() {
        assert_eq!(told("Lost my job yesterday"), "I lost my job yesterday");
        assert_eq!(told("Just got some new shoes"), "I just got some new shoes");
        assert_eq!(told("Been reading a book lately"), "I've been reading a book lately");
        assert_eq!(told("Made me smile"), "Made me smile");
        assert_eq!(told("Thought so too"), "Thought so too");
        assert_eq!(told("Sounds great to me"), "Sounds great to me");
    }

    #[test]
    fn a_value_that_changed_is_the_one_it_has_now() {
        assert_eq!(
            told("My favourite band used to be Coldplay, but now it's Radiohead"),
            "My favourite band is Radiohead"
        );
        assert_eq!(told("My car used to be red"), "My car used to be red");
    }

    #[test]
    fn we_is_the_user_with_others() {
        assert_eq!(told("We got another cat named Bailey"), "I got another cat named Bailey");
        assert_eq!(told("We all made our own pots"), "I made my own pots");
        assert_eq!(told("We're both on different paths"), "We're both on different paths");
        assert_eq!(told("We can do it"), "We can do it");
    }
}
