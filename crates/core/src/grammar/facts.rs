//! Reading a third-person fact about the user: who owns what it says, its predicate and tense,
//! and the managed topic of a statement.

use super::attributes::{opinion_object, specific_attribute};
use super::lexicon::{
    ASSISTANT_WORDS, IRREGULAR_PAST, MODALS, PAST_OPINIONS, PERSONAL_PAST, PLAN_PHRASES, PRESENT_ENDING_IN_ED,
    THIRD_PERSON_VERBS,
};
use super::words::{
    bare, is_adverb, is_function_word, is_past, standard_spelling, starts_with_any, starts_with_phrase,
};
use super::{CONVERSATION_DETAILS, PERSONAL_INFO, PREFERENCES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tense {
    Present,
    Past,
    /// will, would, can, could, should, might, must, may, shall.
    Modal,
}

/// A fact about the user, taken apart: "User no longer drinks coffee" has the predicate
/// `["drink", "coffee"]` and `changed`; "User's favourite colour is blue" has the owner
/// `["favourite", "colour"]` and the predicate `["be", "blue"]`. Negation is dropped, so a
/// statement and its denial have the same predicate and set the same attribute.
#[derive(Debug, Clone)]
pub(super) struct ParsedFact {
    /// What of the user's the fact is about ("User's <owner> ..."); empty for "User ...".
    pub(super) owner: Vec<String>,
    /// Lowercase, spelling standardised, with adverbs, negation and do-support removed, "is/are"
    /// as "be", "has" as "have", and a simple present head verb in its base form.
    pub(super) predicate: Vec<String>,
    pub(super) tense: Tense,
    /// "no longer", "used to", "anymore": the fact reports a change.
    pub(super) changed: bool,
}

pub(super) fn parse_fact(fact: &str) -> Option<ParsedFact> {
    let mut lower: Vec<String> = fact
        .split_whitespace()
        .map(bare)
        .filter(|word| !word.is_empty())
        .map(|word| standard_spelling(&word))
        .collect();
    if lower.first().is_some_and(|word| word == "the")
        && lower.get(1).is_some_and(|word| matches!(word.as_str(), "user" | "user's" | "users"))
    {
        lower.remove(0);
    }
    match lower.first()?.as_str() {
        "user" => Some(parse_predicate(Vec::new(), &lower[1..])),
        "user's" | "users" => {
            let owner_end =
                lower[1..].iter().position(|word| starts_predicate(word)).map_or(lower.len(), |idx| idx + 1);
            Some(parse_predicate(lower[1..owner_end].to_vec(), &lower[owner_end..]))
        }
        _ => None,
    }
}

fn parse_predicate(owner: Vec<String>, lower: &[String]) -> ParsedFact {
    let mut parsed = ParsedFact { owner, predicate: Vec::new(), tense: Tense::Present, changed: false };
    let mut has_auxiliary = false;
    let mut head_seen = false;
    let mut idx = 0;
    while idx < lower.len() {
        let word = lower[idx].as_str();
        let next = lower.get(idx + 1).map(String::as_str);
        if word == "anymore" || (word == "any" && next == Some("more") && idx + 2 == lower.len()) {
            parsed.changed = true;
            idx += if word == "any" { 2 } else { 1 };
            continue;
        }
        if head_seen {
            parsed.predicate.push(word.to_owned());
            idx += 1;
            continue;
        }
        if (word == "no" && next == Some("longer")) || (word == "used" && next == Some("to")) {
            parsed.changed = true;
            idx += 2;
            continue;
        }
        if word == "not" || word == "never" || is_adverb(word) {
            idx += 1;
            continue;
        }
        if let Some(auxiliary) = auxiliary(word) {
            if let Some(tense) = auxiliary.tense {
                parsed.tense = tense;
            }
            parsed.predicate.extend(auxiliary.canonical.map(str::to_owned));
            has_auxiliary = true;
            idx += 1;
            continue;
        }
        if has_auxiliary {
            parsed.predicate.push(word.to_owned());
        } else if is_past(word) {
            parsed.tense = Tense::Past;
            parsed.predicate.push(word.to_owned());
        } else {
            parsed.predicate.push(base_form(word));
        }
        head_seen = true;
        idx += 1;
    }
    parsed
}

pub(super) struct Auxiliary {
    /// The word kept in the predicate: "be" for is/are, "have" for has, the modal itself; `None`
    /// for do-support.
    canonical: Option<&'static str>,
    tense: Option<Tense>,
}

pub(super) fn auxiliary(lower: &str) -> Option<Auxiliary> {
    let (canonical, tense) = match lower {
        "is" | "are" | "am" | "isn't" | "aren't" | "isnt" => (Some("be"), None),
        "was" | "were" | "wasn't" | "weren't" => (Some("was"), Some(Tense::Past)),
        "has" | "have" | "hasn't" | "haven't" | "hasnt" => (Some("have"), None),
        "had" | "hadn't" => (Some("had"), Some(Tense::Past)),
        "does" | "do" | "doesn't" | "don't" | "doesnt" | "dont" => (None, None),
        "did" | "didn't" | "didnt" => (None, Some(Tense::Past)),
        "will" | "won't" => (Some("will"), Some(Tense::Modal)),
        "would" | "wouldn't" => (Some("would"), Some(Tense::Modal)),
        "can" | "can't" | "cannot" | "cant" => (Some("can"), Some(Tense::Modal)),
        "could" | "couldn't" => (Some("could"), Some(Tense::Modal)),
        "should" | "shouldn't" => (Some("should"), Some(Tense::Modal)),
        "must" | "mustn't" => (Some("must"), Some(Tense::Modal)),
        "might" => (Some("might"), Some(Tense::Modal)),
        "may" => (Some("may"), Some(Tense::Modal)),
        "shall" => (Some("shall"), Some(Tense::Modal)),
        _ => return None,
    };
    Some(Auxiliary { canonical, tense })
}

/// Where the owner of a possessive fact ends: "User's favourite colour | is blue".
fn starts_predicate(lower: &str) -> bool {
    auxiliary(lower).is_some()
        || matches!(lower, "no" | "not" | "never" | "still" | "also" | "now" | "just" | "used")
        || is_verb_form(lower)
}

/// A word that is a verb in a clause about one of the user's things ("my sister lives in Rome").
pub(super) fn is_verb_form(lower: &str) -> bool {
    auxiliary(lower).is_some()
        || THIRD_PERSON_VERBS.contains(&lower)
        || IRREGULAR_PAST.contains(&lower)
        || (lower.len() > 4 && lower.ends_with("ed") && !PRESENT_ENDING_IN_ED.contains(&lower))
}

/// lives -> live, studies -> study, watches -> watch, has -> have.
fn base_form(lower: &str) -> String {
    match lower {
        "is" => return "be".to_owned(),
        "has" => return "have".to_owned(),
        "does" => return "do".to_owned(),
        "goes" => return "go".to_owned(),
        _ => {}
    }
    if lower.len() > 4 && lower.ends_with("ies") {
        return format!("{}y", &lower[..lower.len() - 3]);
    }
    if ["sses", "shes", "ches", "xes", "zzes", "oes"].iter().any(|ending| lower.ends_with(ending)) {
        return lower[..lower.len() - 2].to_owned();
    }
    if lower.len() > 2 && lower.ends_with('s') && !["ss", "us", "is"].iter().any(|ending| lower.ends_with(ending)) {
        return lower[..lower.len() - 1].to_owned();
    }
    lower.to_owned()
}

/// The managed topic and confidence of a first-person statement, or `None` when it says nothing
/// worth keeping.
pub(super) fn statement_topic(parsed: &ParsedFact) -> Option<(&'static str, f64)> {
    let predicate = &parsed.predicate;
    if !parsed.owner.is_empty() {
        return possession_topic(parsed);
    }
    // Nothing after the verb but pronouns and little words: "User agrees", "User loves it". A
    // change needs no object: "User used to smoke".
    let head = predicate.first()?;
    if predicate.len() == 1 {
        let is_change = parsed.changed && !is_function_word(head) && auxiliary(head).is_none();
        return is_change.then_some((PERSONAL_INFO, 0.8));
    }
    if predicate[1..].iter().all(|word| is_function_word(word)) {
        return None;
    }
    // After a modal, the verb comes first: "User would love that" says no more than "User loves it".
    let is_modal = MODALS.contains(&predicate[0].as_str());
    let object = if is_modal { &predicate[2..] } else { &predicate[1..] };
    if !object.is_empty() && object.iter().all(|word| is_function_word(word)) {
        return None;
    }
    // About the assistant: "User likes your answer", "User wants you to ...".
    if object.first().is_some_and(|word| ASSISTANT_WORDS.contains(&word.as_str())) {
        return None;
    }
    predicate_topic(parsed, is_modal)
}

/// A statement about one of the user's things: "User's favourite colour is blue".
fn possession_topic(parsed: &ParsedFact) -> Option<(&'static str, f64)> {
    let predicate = &parsed.predicate;
    if predicate.is_empty() || predicate.iter().all(|word| is_function_word(word)) {
        return None;
    }
    if parsed.owner[0] == "favourite" {
        return Some((PREFERENCES, 0.9));
    }
    let is_copula = matches!(predicate[0].as_str(), "be" | "was");
    Some((PERSONAL_INFO, if is_copula { 0.9 } else { 0.8 }))
}

/// The topic of a statement about the user with a verb and an object, by what the predicate says.
fn predicate_topic(parsed: &ParsedFact, is_modal: bool) -> Option<(&'static str, f64)> {
    let predicate = &parsed.predicate;
    if starts_with_any(predicate, &["would rather", "would prefer"]) {
        return Some((PREFERENCES, 0.85));
    }
    // "I'd like a coffee" asks for something now.
    if starts_with_phrase(predicate, "would like") && predicate.get(2).is_none_or(|word| word != "to") {
        return None;
    }
    if is_plan(parsed) {
        return Some((CONVERSATION_DETAILS, 0.75));
    }
    if opinion_object(predicate).is_some() {
        return Some((PREFERENCES, 0.85));
    }
    // What the user eats and drinks ("can't eat gluten") is a dietary preference.
    let verb = if is_modal { predicate[1].as_str() } else { predicate[0].as_str() };
    if matches!(verb, "eat" | "drink") {
        return Some((PREFERENCES, 0.8));
    }
    if parsed.tense == Tense::Modal {
        return Some((PERSONAL_INFO, 0.8));
    }
    if specific_attribute(predicate).is_some() {
        return Some((PERSONAL_INFO, 0.85));
    }
    if parsed.tense == Tense::Past {
        if starts_with_any(predicate, PAST_OPINIONS) {
            return Some((PREFERENCES, 0.75));
        }
        if starts_with_any(predicate, PERSONAL_PAST) {
            return Some((PERSONAL_INFO, 0.8));
        }
        return Some((CONVERSATION_DETAILS, 0.7));
    }
    if predicate[0] == "be" && predicate[1].ends_with("ing") {
        return Some((CONVERSATION_DETAILS, 0.7));
    }
    if matches!(predicate[0].as_str(), "be" | "have") {
        return Some((PERSONAL_INFO, 0.85));
    }
    Some((PERSONAL_INFO, 0.8))
}

pub(super) fn is_plan(parsed: &ParsedFact) -> bool {
    let predicate = &parsed.predicate;
    starts_with_any(predicate, PLAN_PHRASES)
        || (parsed.tense == Tense::Modal && !matches!(predicate.first().map(String::as_str), Some("can" | "could")))
}
