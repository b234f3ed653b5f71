//! What a fact sets: the attribute a later fact with a new value replaces.

use super::facts::{ParsedFact, Tense, auxiliary, is_plan, parse_fact};
use super::lexicon::{ATTRIBUTE_PHRASES, DIETS, MODALS, OPINION_PHRASES, TRAILING_QUALIFIERS};
use super::words::{bare, is_past, phrase_len, starts_with_any, starts_with_phrase, trim_trailing_punctuation};

/// What a third-person fact about the user sets, so a new value can replace the old one:
/// "residence" for "User lives in Paris", "User moved to Berlin" and "User no longer lives in
/// Paris"; "favourite colour" for "User's favourite color is green"; "opinion:coffee" for "User
/// likes coffee" and "User hates coffee". `None` when the fact sets nothing that a later fact
/// could overwrite (a plan, a past event, a fact not about the user).
pub fn attribute_of(fact: &str) -> Option<String> {
    attribute_of_parsed(&parse_fact(fact)?)
}

fn attribute_of_parsed(parsed: &ParsedFact) -> Option<String> {
    if parsed.owner.is_empty() {
        return predicate_attribute(parsed);
    }
    let owner = parsed.owner.join(" ");
    match parsed.predicate.first().map(String::as_str) {
        // A bare noun phrase, as in a forget request: "User's address".
        None => (parsed.owner.len() <= 5).then_some(owner),
        // "User's daughter is 5 years old" is the daughter's age, not what the daughter is.
        Some("be") if is_age_in_years(&parsed.predicate) => Some(format!("{owner}:age")),
        Some("be" | "was") => Some(owner),
        // "User's sister lives in Rome" sets the sister's residence.
        Some(_) => predicate_attribute(parsed).map(|attribute| format!("{owner}:{attribute}")),
    }
}

/// An attribute a fact sets and the value it sets it to, for a profile: "residence" =
/// "Hamburg" for "User lives in Hamburg", "favourite colour" = "green" for "User's favourite
/// colour is green". A named attribute's value is its object in the fact's own words; any other
/// attribute's is what the fact says of its subject ("likes coffee", "doesn't eat pork").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeValue {
    pub attribute: String,
    /// `None` for a denial of a named attribute: "User no longer lives in Berlin" leaves the
    /// residence unknown, it is not a value of it.
    pub value: Option<String>,
}

/// What [`attribute_of`] names, with its value, from one parse of the fact.
pub fn attribute_value_of(fact: &str) -> Option<AttributeValue> {
    let parsed = parse_fact(fact)?;
    let attribute = attribute_of_parsed(&parsed)?;
    let tokens: Vec<&str> = fact.split_whitespace().filter(|token| !bare(token).is_empty()).collect();
    let negated = parsed.changed
        || tokens.iter().any(|token| {
            let word = bare(token);
            matches!(word.as_str(), "not" | "never" | "cannot")
                || word.ends_with("n't")
                || (word.ends_with("nt") && auxiliary(&word).is_some())
        });
    let predicate = &parsed.predicate;
    let object_len = match named_phrase_len(&parsed) {
        Some(phrase_len) => predicate.len().saturating_sub(phrase_len),
        None => 0,
    };
    let value = if object_len > 0 {
        if negated {
            return Some(AttributeValue { attribute, value: None });
        }
        tokens[tokens.len().saturating_sub(object_len)..].join(" ")
    } else {
        // Everything after the subject: "User" or "The user", and an owner's words.
        let subject_len = usize::from(bare(tokens.first()?) == "the") + 1 + parsed.owner.len();
        tokens.get(subject_len..).filter(|rest| !rest.is_empty())?.join(" ")
    };
    let value = trim_trailing_punctuation(&value).to_owned();
    (!value.is_empty()).then_some(AttributeValue { attribute, value: Some(value) })
}

/// How many words of the predicate name a named attribute, before its value: 1 for "is" in
/// "User's name is Sam" and "User is 34", 2 for "lives in", 3 for "is allergic to".
fn named_phrase_len(parsed: &ParsedFact) -> Option<usize> {
    let predicate = &parsed.predicate;
    let head = predicate.first().map(String::as_str);
    if !parsed.owner.is_empty() && matches!(head, Some("be" | "was")) {
        return Some(1);
    }
    if starts_with_phrase(predicate, "prefer to be called") {
        return Some(4);
    }
    if let Some(phrase) = ATTRIBUTE_PHRASES
        .iter()
        .flat_map(|(phrases, _)| phrases.iter())
        .filter(|phrase| starts_with_phrase(predicate, phrase))
        .max_by_key(|phrase| phrase_len(phrase))
    {
        return Some(phrase_len(phrase));
    }
    if starts_with_phrase(predicate, "be allergic to") || starts_with_phrase(predicate, "was born") {
        return Some(3);
    }
    match specific_attribute(predicate).as_deref() {
        Some("age") => Some(if predicate.get(1).is_some_and(|word| word == "aged") { 2 } else { 1 }),
        Some("diet") => Some(1),
        _ => None,
    }
}

fn predicate_attribute(parsed: &ParsedFact) -> Option<String> {
    let predicate = &parsed.predicate;
    if let Some(attribute) = specific_attribute(predicate) {
        return Some(attribute);
    }
    if let Some(object) = opinion_object(predicate) {
        return Some(format!("opinion:{object}"));
    }
    if let Some(owner) = changed_possession(predicate) {
        return Some(owner);
    }
    if parsed.tense != Tense::Present || is_plan(parsed) || predicate.len() < 2 {
        return None;
    }
    // Any other simple present statement: its verb and object, so "User eats meat" and "User
    // doesn't eat meat" set the same thing.
    let head = predicate[0].as_str();
    if matches!(head, "be" | "have") {
        let next = predicate[1].as_str();
        if next.ends_with("ing") || next == "been" || is_past(next) {
            return None;
        }
    } else if auxiliary(head).is_some() || MODALS.contains(&head) {
        return None;
    }
    object_key(&predicate[1..]).map(|object| format!("{head}:{object}"))
}

/// The named attributes: where the user lives, works, comes from, how old they are, their name.
pub(super) fn specific_attribute(predicate: &[String]) -> Option<String> {
    if starts_with_phrase(predicate, "prefer to be called") {
        return Some("nickname".to_owned());
    }
    if let Some((_, attribute)) = ATTRIBUTE_PHRASES.iter().find(|(phrases, _)| starts_with_any(predicate, phrases)) {
        return Some((*attribute).to_owned());
    }
    let word = |idx: usize| predicate.get(idx).map_or("", String::as_str);
    let is_number = |text: &str| !text.is_empty() && text.chars().all(|ch| ch.is_ascii_digit());
    let is_age = (word(0) == "be" && is_number(word(1)) && matches!(word(2), "" | "years" | "year" | "yrs" | "yo"))
        || (word(0) == "be" && word(1) == "aged" && is_number(word(2)))
        || (word(0) == "turned" && is_number(word(1)));
    if is_age {
        return Some("age".to_owned());
    }
    let diet_at = if matches!(word(1), "a" | "an") { 2 } else { 1 };
    if word(0) == "be" && DIETS.contains(&word(diet_at)) && predicate.len() == diet_at + 1 {
        return Some("diet".to_owned());
    }
    if starts_with_phrase(predicate, "was born") {
        return match (word(2), is_number(word(3))) {
            ("on", _) => Some("birthday".to_owned()),
            ("in", true) => Some("birth year".to_owned()),
            ("in", false) => Some("birthplace".to_owned()),
            _ => None,
        };
    }
    if starts_with_phrase(predicate, "be allergic to") {
        return object_key(&predicate[3..]).map(|object| format!("allergy:{object}"));
    }
    None
}

/// "be 5 years old", "be 18 months old".
fn is_age_in_years(predicate: &[String]) -> bool {
    let word = |idx: usize| predicate.get(idx).map_or("", String::as_str);
    word(0) == "be"
        && !word(1).is_empty()
        && word(1).chars().all(|ch| ch.is_ascii_digit())
        && matches!(word(2), "years" | "year" | "months" | "month")
        && word(3) == "old"
}

/// What a like, dislike or love is about: "coffee" for "like coffee", "swim" for "like to swim".
pub(super) fn opinion_object(predicate: &[String]) -> Option<String> {
    let phrase = OPINION_PHRASES.iter().find(|phrase| starts_with_phrase(predicate, phrase))?;
    object_key(&predicate[phrase_len(phrase)..])
}

/// "changed their email to x" sets the email.
fn changed_possession(predicate: &[String]) -> Option<String> {
    if !matches!(predicate.first()?.as_str(), "changed" | "switched" | "updated")
        || !matches!(predicate.get(1)?.as_str(), "user's" | "their" | "his" | "her")
    {
        return None;
    }
    let to_idx = predicate.iter().position(|word| word == "to")?;
    (to_idx > 2).then(|| predicate[2..to_idx].join(" "))
}

/// An object as an attribute key: articles, "to" and trailing qualifiers dropped, and cut before
/// a comparison ("tea over coffee" is about tea).
fn object_key(object: &[String]) -> Option<String> {
    let start = object.iter().take_while(|word| matches!(word.as_str(), "to" | "a" | "an" | "the" | "some")).count();
    let mut object = &object[start..];
    if let Some(cut) = object.iter().position(|word| matches!(word.as_str(), "over" | "rather" | "instead" | "than"))
        && cut > 0
    {
        object = &object[..cut];
    }
    while let Some((last, rest)) = object.split_last() {
        if !TRAILING_QUALIFIERS.contains(&last.as_str()) {
            break;
        }
        object = rest;
    }
    (!object.is_empty()).then(|| object.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_attribute(fact: &str, expected: Option<&str>) {
        assert_eq!(attribute_of(fact).as_deref(), expected, "attribute of {fact:?}");
    }

    #[test]
    fn names_the_attribute_a_fact_sets() {
        check_attribute("User's favourite colour is blue", Some("favourite colour"));
        check_attribute("User's favorite color is green", Some("favourite colour"));
        check_attribute("User lives in Paris", Some("residence"));
        check_attribute("User moved to Berlin", Some("residence"));
        check_attribute("User no longer lives in Paris", Some("residence"));
        check_attribute("User used to live in Rome", Some("residence"));
        check_attribute("User works at Acme", Some("employer"));
        check_attribute("User works for the government", Some("employer"));
        check_attribute("User works as a nurse", Some("occupation"));
        check_attribute("User is 34 years old", Some("age"));
        check_attribute("User is 34", Some("age"));
        check_attribute("User's name is Sam", Some("name"));
        check_attribute("User is from Canada", Some("origin"));
        check_attribute("User was born in 1990", Some("birth year"));
        check_attribute("User was born in Lyon", Some("birthplace"));
        check_attribute("User is allergic to peanuts", Some("allergy:peanuts"));
        check_attribute("User likes coffee", Some("opinion:coffee"));
        check_attribute("User no longer likes coffee", Some("opinion:coffee"));
        check_attribute("User doesn't like coffee", Some("opinion:coffee"));
        check_attribute("User hates coffee", Some("opinion:coffee"));
        check_attribute("User really loves coffee a lot", Some("opinion:coffee"));
        check_attribute("User likes to swim", Some("opinion:swim"));
        check_attribute("User prefers tea over coffee", Some("opinion:tea"));
        check_attribute("User can't stand loud music", Some("opinion:loud music"));
        check_attribute("User's address", Some("address"));
        check_attribute("User's phone number", Some("phone number"));
        check_attribute("User's sister lives in Rome", Some("sister:residence"));
        check_attribute("User changed their name to Sam", Some("name"));
        check_attribute("User prefers to be called Bob", Some("nickname"));
        check_attribute("User's daughter is 5 years old", Some("daughter:age"));
        check_attribute("User's favourite number is 7", Some("favourite number"));
        check_attribute("User used to smoke", None);
        check_attribute("User drinks coffee", Some("drink:coffee"));
        check_attribute("User is in Paris right now", Some("be:in paris"));
        check_attribute("User is vegetarian", Some("diet"));
        check_attribute("User is a vegan", Some("diet"));
        check_attribute("User is no longer vegetarian", Some("diet"));
        check_attribute("USER LIVES IN PARIS", Some("residence"));
        check_attribute("The user lives in Paris.", Some("residence"));
    }

    #[track_caller]
    fn check_value(fact: &str, expected: Option<(&str, &str)>) {
        let found = attribute_value_of(fact);
        let found = found.as_ref().and_then(|found| Some((found.attribute.as_str(), found.value.as_deref()?)));
        assert_eq!(found, expected, "attribute and value of {fact:?}");
    }

    #[test]
    fn reads_the_value_a_fact_sets() {
        let denial = attribute_value_of("User no longer lives in Berlin");
        assert_eq!(denial, Some(AttributeValue { attribute: "residence".to_owned(), value: None }));
        check_value("User's name is Maria", Some(("name", "Maria")));
        check_value("User is called Maria Schmidt.", Some(("name", "Maria Schmidt")));
        check_value("User is 34 years old", Some(("age", "34 years old")));
        check_value("User is 34", Some(("age", "34")));
        check_value("User lives in Hamburg", Some(("residence", "Hamburg")));
        check_value("The user has moved to New York", Some(("residence", "New York")));
        check_value("User works as a nurse at the Charité", Some(("occupation", "a nurse at the Charité")));
        check_value("User works at Acme", Some(("employer", "Acme")));
        check_value("User's favourite colour is green", Some(("favourite colour", "green")));
        check_value("User is allergic to peanuts", Some(("allergy:peanuts", "peanuts")));
        check_value("User was born in 1990", Some(("birth year", "1990")));
        check_value("User prefers to be called Bob", Some(("nickname", "Bob")));
        check_value("User's daughter is 5 years old", Some(("daughter:age", "5 years old")));
        check_value("User's sister lives in Rome", Some(("sister:residence", "Rome")));
        check_value("User likes coffee", Some(("opinion:coffee", "likes coffee")));
        check_value("User doesn't eat pork", Some(("eat:pork", "doesn't eat pork")));
        check_value("User is vegetarian", Some(("diet", "vegetarian")));
        check_value("User is a vegan", Some(("diet", "a vegan")));
        check_value("User is in Paris right now", Some(("be:in paris", "is in Paris right now")));
        // A denial of a named attribute leaves it without a value.
        check_value("User no longer lives in Berlin", None);
        check_value("User doesn't live in Berlin", None);
        check_value("User's name is not Sam", None);
        check_value("User went to the cinema yesterday", None);
    }

    #[test]
    fn changed_statements_set_the_same_attribute() {
        for (old, new) in [
            ("User drinks coffee", "User no longer drinks coffee"),
            ("User eats meat", "User doesn't eat meat"),
            ("User is vegetarian", "User is no longer vegetarian"),
            ("User has a car", "User doesn't have a car"),
            ("User lives in Paris", "User lives in Berlin"),
            ("User likes coffee", "User hates coffee"),
            ("User's favourite colour is blue", "User's favorite color is green"),
        ] {
            let old_attribute = attribute_of(old);
            assert!(old_attribute.is_some(), "{old:?} sets something");
            assert_eq!(old_attribute, attribute_of(new), "{old:?} and {new:?}");
        }
        assert_ne!(attribute_of("User likes coffee"), attribute_of("User likes tea"));
        assert_ne!(attribute_of("User works at Acme"), attribute_of("User works as a nurse"));
    }

    #[test]
    fn facts_without_an_attribute() {
        for fact in [
            "User is planning to visit Rome",
            "User will start a new job",
            "User visited Rome last year",
            "User has been to Japan",
            "the meeting is at 5pm",
            "Paris is lovely",
            "",
        ] {
            check_attribute(fact, None);
        }
    }
}
