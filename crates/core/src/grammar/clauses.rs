//! Reading one clause: a request to remember or forget, a first-person statement, or nothing
//! (filler, hedges, passing moods, questions).

use super::changes::restate;
use super::facts::{is_verb_form, parse_fact, statement_topic};
use super::lexicon::{
    FILLER_PREFIXES, FORGET_PHRASES, FORGET_VAGUE, FORGET_VAGUE_PHRASES, INTENSIFIERS, PASSING_STATES,
    REMEMBER_PHRASES, REMEMBER_VAGUE, REQUEST_PREFIXES, STATE_TAIL, SUBORDINATORS, TRAILERS,
};
use super::narration::as_first_person;
use super::person::{is_first_person_subject, third_person};
use super::phrasing::{name_or_age, shared_plan_as_first_person, tidy};
use super::sentences::lead_in_len;
use super::words::{
    bare, ends_with_phrase, finish_fact, is_function_word, lower_words, phrase_len, starts_with_phrase,
    trim_trailing_punctuation,
};
use super::{EXPLICIT_INSTRUCTIONS, Finding, FindingKind, PERSONAL_INFO, PREFERENCES};

/// The user asked in so many words; only a typo stands between this and certainty.
const EXPLICIT_CONFIDENCE: f64 = 0.95;

pub(super) fn read_clause(tokens: Vec<String>, is_question: bool) -> Option<Finding> {
    let tokens = as_first_person(trim_clause(tokens));
    if tokens.is_empty() {
        return None;
    }
    let lower = lower_words(&tokens);
    match read_instruction(&tokens, &lower, is_question) {
        Instruction::Found(finding) => return Some(finding),
        Instruction::Unusable => return None,
        Instruction::NotOne => {}
    }
    if is_question {
        return None;
    }
    read_statement(&tokens, &lower)
}

/// Drops greetings, discourse markers, sign-offs and stray punctuation around a clause.
fn trim_clause(mut tokens: Vec<String>) -> Vec<String> {
    loop {
        let first_is_noise = tokens.first().is_some_and(|token| !token.chars().any(char::is_alphanumeric));
        let last_is_noise = tokens.last().is_some_and(|token| !token.chars().any(char::is_alphanumeric));
        if first_is_noise {
            tokens.remove(0);
            continue;
        }
        if last_is_noise {
            tokens.pop();
            continue;
        }
        let lower = lower_words(&tokens);
        let lead_len = lead_in_len(&lower);
        if lead_len > 0 {
            tokens.drain(..lead_len);
            continue;
        }
        if let Some(phrase) = TRAILERS.iter().find(|phrase| ends_with_phrase(&lower, phrase)) {
            tokens.truncate(tokens.len() - phrase_len(phrase));
            continue;
        }
        break;
    }
    if let Some(first) = tokens.first_mut() {
        *first = first.trim_start_matches(|ch: char| !ch.is_alphanumeric()).to_owned();
    }
    if let Some(last) = tokens.last_mut() {
        *last = trim_trailing_punctuation(last).to_owned();
    }
    tokens
}

enum Instruction {
    NotOne,
    /// An instruction with nothing usable to remember or forget ("forget it", "remember to call").
    Unusable,
    Found(Finding),
}

fn read_instruction(tokens: &[String], lower: &[String], is_question: bool) -> Instruction {
    let (idx, asked) = request_prefix_len(lower);
    let Some((kind, keyword_len)) = instruction_keyword(&tokens[idx..], &lower[idx..]) else {
        return Instruction::NotOne;
    };
    // "Can you remember that ...?" is a request; "Remember what I said?" is not.
    if is_question && !asked {
        return Instruction::Unusable;
    }
    let body_idx = instruction_body_idx(tokens, lower, idx + keyword_len, kind);
    let body = &tokens[body_idx..];
    let body_lower = &lower[body_idx..];
    if names_no_fact(body_lower, kind) {
        return Instruction::Unusable;
    }
    let fact = tidy(finish_fact(&restate(body, body_lower)));
    let usable = match kind {
        FindingKind::Assert => match parse_fact(&fact) {
            Some(parsed) => statement_topic(&parsed).is_some(),
            None => fact.split_whitespace().count() >= 3,
        },
        FindingKind::Forget => fact.split_whitespace().any(|word| !is_function_word(&bare(word))),
    };
    if !usable {
        return Instruction::Unusable;
    }
    Instruction::Found(Finding { fact, kind, topic: EXPLICIT_INSTRUCTIONS, confidence: EXPLICIT_CONFIDENCE })
}

/// How many leading words are "please" and ways of asking ("can you"), and whether one asked.
fn request_prefix_len(lower: &[String]) -> (usize, bool) {
    let mut idx = 0;
    let mut asked = false;
    loop {
        if lower.get(idx).is_some_and(|word| word == "please") {
            idx += 1;
        } else if let Some(prefix) = REQUEST_PREFIXES.iter().find(|prefix| starts_with_phrase(&lower[idx..], prefix)) {
            idx += phrase_len(prefix);
            asked = true;
        } else {
            break;
        }
    }
    (idx, asked)
}

/// Where what to remember or forget starts, after the keyword and markers such as "that", "the
/// fact that", "this:" and (to forget) "about".
fn instruction_body_idx(tokens: &[String], lower: &[String], mut body_idx: usize, kind: FindingKind) -> usize {
    let mut that_skipped = false;
    while let Some(word) = lower.get(body_idx) {
        let is_marker = match word.as_str() {
            "" => true,
            "that" if !that_skipped => {
                that_skipped = true;
                true
            }
            "this" => tokens[body_idx].ends_with(':'),
            "about" => kind == FindingKind::Forget,
            _ => false,
        };
        if starts_with_phrase(&lower[body_idx..], "the fact that") {
            body_idx += 3;
            that_skipped = true;
        } else if is_marker {
            body_idx += 1;
        } else {
            break;
        }
    }
    body_idx
}

/// An instruction's body too vague to act on: empty, a pronoun, a reminder, filler, or a quote of
/// the conversation.
fn names_no_fact(body_lower: &[String], kind: FindingKind) -> bool {
    let Some(first) = body_lower.first() else { return true };
    let vague = match kind {
        FindingKind::Assert => REMEMBER_VAGUE.contains(&first.as_str()),
        FindingKind::Forget => {
            FORGET_VAGUE.contains(&first.as_str())
                || FORGET_VAGUE_PHRASES.iter().any(|phrase| starts_with_phrase(body_lower, phrase))
        }
    };
    // "forget the thing I said earlier" names no fact.
    let quotes_the_conversation = body_lower
        .windows(2)
        .any(|pair| pair[0] == "i" && matches!(pair[1].as_str(), "said" | "told" | "mentioned" | "asked" | "wrote"));
    vague || quotes_the_conversation || is_filler(body_lower)
}

/// The remember or forget keyword a clause opens with, and how many words it takes.
fn instruction_keyword(tokens: &[String], lower: &[String]) -> Option<(FindingKind, usize)> {
    if let Some(phrase) = REMEMBER_PHRASES.iter().find(|phrase| starts_with_phrase(lower, phrase)) {
        return Some((FindingKind::Assert, phrase_len(phrase)));
    }
    // "Note: I'm vegan."
    if lower.first().is_some_and(|word| word == "note") && tokens[0].ends_with(':') {
        return Some((FindingKind::Assert, 1));
    }
    let phrase = FORGET_PHRASES.iter().find(|phrase| starts_with_phrase(lower, phrase))?;
    Some((FindingKind::Forget, phrase_len(phrase)))
}

fn read_statement(tokens: &[String], lower: &[String]) -> Option<Finding> {
    if is_filler(lower) || lower.iter().any(|word| word == "question" || word == "questions") {
        return None;
    }
    // "I'm vegan, so please ..." and "I work from home, which I love": the fact is the main clause.
    let main_len = (1..tokens.len())
        .find(|&idx| tokens[idx - 1].ends_with(',') && SUBORDINATORS.contains(&lower[idx].as_str()))
        .unwrap_or(tokens.len());
    let (tokens, lower) = (&tokens[..main_len], &lower[..main_len]);
    if let Some(finding) = standing_request(tokens, lower) {
        return Some(finding);
    }
    if let Some(name) = preferred_name(tokens, lower) {
        let fact = format!("User prefers to be called {name}");
        return Some(Finding { fact, kind: FindingKind::Assert, topic: PERSONAL_INFO, confidence: 0.85 });
    }
    if let Some(fact) = name_or_age(tokens, lower) {
        return Some(Finding { fact, kind: FindingKind::Assert, topic: PERSONAL_INFO, confidence: 0.85 });
    }
    let shared = shared_plan_as_first_person(tokens, lower).map(|tokens| {
        let lower = lower_words(&tokens);
        (tokens, lower)
    });
    let (tokens, lower) = match &shared {
        Some((tokens, lower)) => (tokens.as_slice(), lower.as_slice()),
        None => (tokens, lower),
    };
    let first = lower[0].as_str();
    if first == "my" && reports_an_opinion(lower) {
        return None;
    }
    let fact_tokens = if first == "my" {
        // "My wife and I live here" is about both of them; the rewrite would garble it.
        if lower.windows(2).any(|pair| pair[0] == "and" && (pair[1] == "i" || pair[1] == "me")) {
            return None;
        }
        let tokens = expand_possessive_copula(tokens, lower);
        if !lower_words(&tokens[1..]).iter().any(|word| is_verb_form(word)) {
            return None;
        }
        third_person(&tokens)
    } else if is_first_person_subject(first) {
        restate(tokens, lower)
    } else {
        return None;
    };
    let fact = tidy(finish_fact(&fact_tokens));
    let (topic, confidence) = statement_topic(&parse_fact(&fact)?)?;
    Some(Finding { fact, kind: FindingKind::Assert, topic, confidence })
}

/// "My manager thinks I should ...", "my mum says ...": what someone else thinks or says, which
/// is theirs to hold, not a fact about the user.
fn reports_an_opinion(lower: &[String]) -> bool {
    lower
        .iter()
        .skip(1)
        .take(4)
        .any(|word| matches!(word.as_str(), "thinks" | "think" | "says" | "said" | "believes" | "feels" | "reckons"))
}

/// What a standing "don't" asks the assistant not to do: "please don't suggest dairy".
const ASSISTANT_ACTIONS: &[&str] =
    &["suggest", "recommend", "mention", "use", "send", "show", "include", "offer", "book", "schedule", "call"];

/// "Always answer in French", "I'd like you to never use emoji": how the user wants the assistant
/// to behave from now on, which is a preference rather than a request about this conversation.
fn standing_request(tokens: &[String], lower: &[String]) -> Option<Finding> {
    let prefix_len = ["please", "i want you to", "i would like you to", "i'd like you to", "i need you to"]
        .into_iter()
        .find(|prefix| starts_with_phrase(lower, prefix))
        .map_or(0, phrase_len);
    let adverb = lower.get(prefix_len)?;
    // "Please don't suggest dairy": a standing "never" when it is about what the assistant offers.
    if matches!(adverb.as_str(), "don't" | "dont")
        && lower.get(prefix_len + 1).is_some_and(|verb| ASSISTANT_ACTIONS.contains(&verb.as_str()))
        && tokens.len() >= prefix_len + 3
    {
        let request = finish_fact(&tokens[prefix_len + 1..]);
        let fact = format!("User wants the assistant to not {request}");
        return Some(Finding { fact, kind: FindingKind::Assert, topic: PREFERENCES, confidence: 0.85 });
    }
    if !matches!(adverb.as_str(), "always" | "never") || tokens.len() < prefix_len + 3 {
        return None;
    }
    // The adverb moves into the middle of a sentence, so it loses its capital: "Never use emoji".
    let mut request = third_person(&tokens[prefix_len..]);
    request[0] = adverb.clone();
    let fact = format!("User wants the assistant to {}", finish_fact(&request));
    Some(Finding { fact, kind: FindingKind::Assert, topic: PREFERENCES, confidence: 0.85 })
}

/// "Call me Bob", "you can call me Bob": the name the user wants to be addressed by.
fn preferred_name(tokens: &[String], lower: &[String]) -> Option<String> {
    let phrase = ["call me", "please call me", "you can call me", "you may call me"]
        .into_iter()
        .find(|phrase| starts_with_phrase(lower, phrase))?;
    let name = &tokens[phrase_len(phrase)..];
    let first = lower.get(phrase_len(phrase))?;
    let is_name = name.len() <= 4 && !matches!(first.as_str(), "back" | "later" | "tomorrow" | "when" | "if" | "at");
    is_name.then(|| name.join(" "))
}

/// "my name's Sam" reads as "my name is Sam" when the clause has no other verb.
pub(super) fn expand_possessive_copula(tokens: &[String], lower: &[String]) -> Vec<String> {
    if lower[1..].iter().any(|word| is_verb_form(word)) {
        return tokens.to_vec();
    }
    let Some(idx) = (1..tokens.len()).rev().find(|&idx| lower[idx].len() > 2 && lower[idx].ends_with("'s")) else {
        return tokens.to_vec();
    };
    let mut expanded = tokens.to_vec();
    let token = &tokens[idx];
    let cut = token.rfind('\'').unwrap_or(token.len());
    expanded[idx] = token[..cut].to_owned();
    expanded.insert(idx + 1, "is".to_owned());
    expanded
}

/// Hedges, filler, thanks and passing moods: first-person words that state no fact.
fn is_filler(lower: &[String]) -> bool {
    let expanded = expand_contractions(lower);
    if FILLER_PREFIXES.iter().any(|phrase| starts_with_phrase(&expanded, phrase)) {
        return true;
    }
    // "I hope you're right" is filler, "I hope to visit Peru" a plan.
    if starts_with_phrase(&expanded, "i hope") && expanded.get(2).is_none_or(|word| word != "to") {
        return true;
    }
    is_passing_state(&expanded)
}

/// "I'm so tired today", "I'm excited about it": how the user feels now, not who they are. "I'm
/// good at chess" is a fact, so only a state with nothing but time and function words after it
/// counts.
fn is_passing_state(expanded: &[String]) -> bool {
    let mut idx = if starts_with_phrase(expanded, "i am") || starts_with_phrase(expanded, "i feel") {
        2
    } else {
        return false;
    };
    if expanded.get(idx).is_some_and(|word| word == "doing" || word == "feeling") {
        idx += 1;
    }
    match expanded.get(idx) {
        Some(state) if PASSING_STATES.contains(&state.as_str()) => {
            expanded[idx + 1..].iter().all(|word| STATE_TAIL.contains(&word.as_str()) || is_function_word(word))
        }
        _ => false,
    }
}

/// Lowercase words with contractions spelled out and intensifiers dropped, so one filler phrase
/// covers "I'm not sure", "I am really not sure" and "im not sure".
fn expand_contractions(lower: &[String]) -> Vec<String> {
    let mut expanded = Vec::with_capacity(lower.len() + 2);
    for word in lower {
        let parts: &[&str] = match word.as_str() {
            "i'm" | "im" => &["i", "am"],
            "i've" | "ive" => &["i", "have"],
            "i'll" => &["i", "will"],
            "i'd" => &["i", "would"],
            "don't" | "dont" => &["do", "not"],
            "doesn't" => &["does", "not"],
            "didn't" => &["did", "not"],
            "can't" | "cant" | "cannot" => &["can", "not"],
            "won't" => &["will", "not"],
            "haven't" => &["have", "not"],
            "isn't" => &["is", "not"],
            "wasn't" => &["was", "not"],
            word if INTENSIFIERS.contains(&word) => &[],
            _ => {
                expanded.push(word.clone());
                continue;
            }
        };
        expanded.extend(parts.iter().map(|part| (*part).to_owned()));
    }
    expanded
}
