//! The rules extractor: offline, deterministic extraction of what the user says about themself.
//!
//! Only the user's turns are read. Each is split into sentences (on `.`, `!`, `?`, `;` and line
//! breaks, but not inside decimals, addresses like `example.com` or after titles like `Dr.`) and
//! sentences into clauses ("I live in Paris and I work at Acme" is two). A clause is kept when it
//! is one of:
//!
//! - an explicit request to remember something ("remember that I'm vegan", "don't forget that my
//!   flight is on Friday"): an assertion filed under `EXPLICIT_INSTRUCTIONS`, confidence 0.95;
//! - an explicit request to forget something ("forget my address", "please forget that I live in
//!   Paris"): a [`CandidateKind::Forget`] under `EXPLICIT_INSTRUCTIONS`, confidence 0.95;
//! - a first-person statement, filed by what it says: likes, dislikes and favourites under
//!   `USER_PREFERENCES` (0.8-0.9); plans and wishes ("I'm planning to", "I will", "I want to") and
//!   one-off past events under `KEY_CONVERSATION_DETAILS` (0.7-0.75); everything else the user
//!   states about themself ("I live in", "I'm a nurse", "my name is") under `USER_PERSONAL_INFO`
//!   (0.8-0.9).
//!
//! The fact is the clause in the third person about "User" ("User lives in Paris", "User's name
//! is Sam"); the rest of the clause stays verbatim. A few changes are restated as the new state:
//! "I moved to Berlin" is "User lives in Berlin", "I don't drink coffee anymore" is "User no
//! longer drinks coffee", "I changed my email to x" is "User's email is x".
//!
//! Skipped: questions, hedges and filler ("I think so", "I'm not sure", "thanks"), passing moods
//! ("I'm so tired"), sentences about the assistant ("I like your answer", "I want you to ..."),
//! clauses of fewer than two words after the subject ("I agree"), unless they report a change ("I
//! used to smoke"), and clauses with nothing after the verb but pronouns ("I love it").
//! "Remember to ..." is a reminder, not a fact, and is skipped too. Standing requests ("always
//! answer in French") are kept as preferences: "User wants the assistant to always answer in
//! French".
//!
//! Topics: when the request names topics outside the managed set, a fact whose content words
//! (lowercased, plural "s" dropped, function words ignored) share a word with a custom topic's name
//! or description is filed under the first such topic, in request order. Otherwise the fact keeps
//! its managed topic, and is dropped when that topic was not requested.
//!
//! [`attribute_of`] names what a fact sets ("residence", "favourite colour", "opinion:coffee"), so
//! consolidation can let a changed statement replace the one it contradicts.

use std::collections::HashMap;

use crate::Role;

use super::{
    Candidate, CandidateKind, ExtractError, Extractor, GenerationConfig, LlmUsage, MANAGED_TOPICS, Neighbour, Turn,
    Verdict,
};

const PERSONAL_INFO: &str = "USER_PERSONAL_INFO";
const PREFERENCES: &str = "USER_PREFERENCES";
const CONVERSATION_DETAILS: &str = "KEY_CONVERSATION_DETAILS";
const EXPLICIT_INSTRUCTIONS: &str = "EXPLICIT_INSTRUCTIONS";

/// The user asked in so many words; only a typo stands between this and certainty.
const EXPLICIT_CONFIDENCE: f64 = 0.95;

/// Extracts facts with the fixed rules of this module; needs no model and never judges.
#[derive(Debug, Clone, Copy, Default)]
pub struct RulesExtractor;

#[async_trait::async_trait]
impl Extractor for RulesExtractor {
    async fn extract(
        &self,
        turns: &[Turn],
        config: &GenerationConfig,
        _usage: &mut LlmUsage,
    ) -> Result<Vec<Candidate>, ExtractError> {
        Ok(extract_facts(turns, config))
    }

    async fn judge(
        &self,
        _candidate: &Candidate,
        _neighbours: &[Neighbour],
        _usage: &mut LlmUsage,
    ) -> Result<Option<Verdict>, ExtractError> {
        // Rules cannot tell whether a near-duplicate says the same thing: consolidation keeps both.
        Ok(None)
    }
}

/// The facts the user's turns state, in the order they were said, one candidate per distinct fact.
pub fn extract_facts(turns: &[Turn], config: &GenerationConfig) -> Vec<Candidate> {
    let topics = TopicChooser::new(config);
    let mut candidates: Vec<Candidate> = Vec::new();
    // Keyed by (is forget, normalised fact): a fact said twice is one candidate citing both turns.
    let mut candidate_idx_by_key: HashMap<(bool, String), usize> = HashMap::new();
    for turn in turns.iter().filter(|turn| turn.role == Role::User) {
        for finding in findings_in(&turn.content) {
            let Some(topic) = topics.choose(&finding) else { continue };
            let key = (finding.kind == CandidateKind::Forget, normalise(&finding.fact));
            if key.1.is_empty() {
                continue;
            }
            if let Some(&candidate_idx) = candidate_idx_by_key.get(&key) {
                let candidate = &mut candidates[candidate_idx];
                if !candidate.source_event_ids.contains(&turn.event_id) {
                    candidate.source_event_ids.push(turn.event_id);
                }
                candidate.confidence = candidate.confidence.max(finding.confidence);
                continue;
            }
            candidate_idx_by_key.insert(key, candidates.len());
            candidates.push(Candidate {
                fact: finding.fact,
                topic,
                confidence: finding.confidence,
                source_event_ids: vec![turn.event_id],
                kind: finding.kind,
            });
        }
    }
    candidates
}

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

/// What a third-person fact about the user sets, so a new value can replace the old one:
/// "residence" for "User lives in Paris", "User moved to Berlin" and "User no longer lives in
/// Paris"; "favourite colour" for "User's favourite color is green"; "opinion:coffee" for "User
/// likes coffee" and "User hates coffee". `None` when the fact sets nothing that a later fact
/// could overwrite (a plan, a past event, a fact not about the user).
pub fn attribute_of(fact: &str) -> Option<String> {
    let parsed = parse_fact(fact)?;
    if parsed.owner.is_empty() {
        return predicate_attribute(&parsed);
    }
    let owner = parsed.owner.join(" ");
    match parsed.predicate.first().map(String::as_str) {
        // A bare noun phrase, as in a forget request: "User's address".
        None => (parsed.owner.len() <= 5).then_some(owner),
        // "User's daughter is 5 years old" is the daughter's age, not what the daughter is.
        Some("be") if is_age_in_years(&parsed.predicate) => Some(format!("{owner}:age")),
        Some("be" | "was") => Some(owner),
        // "User's sister lives in Rome" sets the sister's residence.
        Some(_) => predicate_attribute(&parsed).map(|attribute| format!("{owner}:{attribute}")),
    }
}

/// A fact found in one clause, before its topic is settled against the request.
#[derive(Debug, Clone, PartialEq)]
struct Finding {
    fact: String,
    kind: CandidateKind,
    /// The managed topic the fact belongs to.
    topic: &'static str,
    confidence: f64,
}

fn findings_in(content: &str) -> Vec<Finding> {
    let content = content.replace(['\u{2019}', '\u{2018}', '\u{02BC}'], "'");
    let mut findings = Vec::new();
    for sentence in split_sentences(&content) {
        for clause in split_clauses(&sentence.text) {
            findings.extend(read_clause(clause, sentence.is_question));
        }
    }
    findings
}

// Sentences and clauses.

#[derive(Debug, Clone, PartialEq)]
struct Sentence {
    text: String,
    is_question: bool,
}

fn split_sentences(content: &str) -> Vec<Sentence> {
    let chars: Vec<char> = content.chars().collect();
    let mut sentences = Vec::new();
    let mut current = String::new();
    let mut idx = 0;
    while idx < chars.len() {
        let ch = chars[idx];
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
fn split_clauses(sentence: &str) -> Vec<Vec<String>> {
    let tokens: Vec<String> = sentence.split_whitespace().map(str::to_owned).collect();
    let lower = lower_words(&tokens);
    let mut clauses = Vec::new();
    let mut start = 0;
    for idx in 1..tokens.len() {
        if !is_first_person_subject(&lower[idx]) {
            continue;
        }
        let after_conjunction = idx - 1 > start && CLAUSE_CONJUNCTIONS.contains(&lower[idx - 1].as_str());
        let after_comma = tokens[idx - 1].ends_with(',');
        if !after_conjunction && !after_comma {
            continue;
        }
        let cut = if after_conjunction { idx - 1 } else { idx };
        if cut > start && stands_alone(&lower[start..cut]) {
            clauses.push(tokens[start..cut].to_vec());
            start = cut;
        }
    }
    clauses.push(tokens[start..].to_vec());
    clauses.retain(|clause| !clause.is_empty());
    clauses
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
fn lead_in_len(lower: &[String]) -> usize {
    let mut len = 0;
    while let Some(phrase) = LEAD_INS.iter().find(|phrase| starts_with_phrase(&lower[len..], phrase)) {
        len += phrase_len(phrase);
    }
    len
}

// Reading a clause.

fn read_clause(tokens: Vec<String>, is_question: bool) -> Option<Finding> {
    let tokens = trim_clause(tokens);
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
    let Some((kind, keyword_len)) = instruction_keyword(&tokens[idx..], &lower[idx..]) else {
        return Instruction::NotOne;
    };
    // "Can you remember that ...?" is a request; "Remember what I said?" is not.
    if is_question && !asked {
        return Instruction::Unusable;
    }
    let mut body_idx = idx + keyword_len;
    let mut that_skipped = false;
    while let Some(word) = lower.get(body_idx) {
        let is_marker = match word.as_str() {
            "" => true,
            "that" if !that_skipped => {
                that_skipped = true;
                true
            }
            "this" => tokens[body_idx].ends_with(':'),
            "about" => kind == CandidateKind::Forget,
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
    let body = &tokens[body_idx..];
    let body_lower = &lower[body_idx..];
    let Some(first) = body_lower.first() else { return Instruction::Unusable };
    let vague = match kind {
        CandidateKind::Assert => REMEMBER_VAGUE.contains(&first.as_str()),
        CandidateKind::Forget => {
            FORGET_VAGUE.contains(&first.as_str())
                || FORGET_VAGUE_PHRASES.iter().any(|phrase| starts_with_phrase(body_lower, phrase))
        }
    };
    // "forget the thing I said earlier" names no fact.
    let quotes_the_conversation = body_lower
        .windows(2)
        .any(|pair| pair[0] == "i" && matches!(pair[1].as_str(), "said" | "told" | "mentioned" | "asked" | "wrote"));
    if vague || quotes_the_conversation || is_filler(body_lower) {
        return Instruction::Unusable;
    }
    let fact = finish_fact(&restate(body, body_lower));
    let usable = match kind {
        CandidateKind::Assert => match parse_fact(&fact) {
            Some(parsed) => statement_topic(&parsed).is_some(),
            None => fact.split_whitespace().count() >= 3,
        },
        CandidateKind::Forget => fact.split_whitespace().any(|word| !is_function_word(&bare(word))),
    };
    if !usable {
        return Instruction::Unusable;
    }
    Instruction::Found(Finding { fact, kind, topic: EXPLICIT_INSTRUCTIONS, confidence: EXPLICIT_CONFIDENCE })
}

/// The remember or forget keyword a clause opens with, and how many words it takes.
fn instruction_keyword(tokens: &[String], lower: &[String]) -> Option<(CandidateKind, usize)> {
    if let Some(phrase) = REMEMBER_PHRASES.iter().find(|phrase| starts_with_phrase(lower, phrase)) {
        return Some((CandidateKind::Assert, phrase_len(phrase)));
    }
    // "Note: I'm vegan."
    if lower.first().is_some_and(|word| word == "note") && tokens[0].ends_with(':') {
        return Some((CandidateKind::Assert, 1));
    }
    let phrase = FORGET_PHRASES.iter().find(|phrase| starts_with_phrase(lower, phrase))?;
    Some((CandidateKind::Forget, phrase_len(phrase)))
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
        return Some(Finding { fact, kind: CandidateKind::Assert, topic: PERSONAL_INFO, confidence: 0.85 });
    }
    let first = lower[0].as_str();
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
    let fact = finish_fact(&fact_tokens);
    let (topic, confidence) = statement_topic(&parse_fact(&fact)?)?;
    Some(Finding { fact, kind: CandidateKind::Assert, topic, confidence })
}

/// "Always answer in French", "I'd like you to never use emoji": how the user wants the assistant
/// to behave from now on, which is a preference rather than a request about this conversation.
fn standing_request(tokens: &[String], lower: &[String]) -> Option<Finding> {
    let prefix_len = ["please", "i want you to", "i would like you to", "i'd like you to", "i need you to"]
        .into_iter()
        .find(|prefix| starts_with_phrase(lower, prefix))
        .map_or(0, phrase_len);
    let adverb = lower.get(prefix_len)?;
    if !matches!(adverb.as_str(), "always" | "never") || tokens.len() < prefix_len + 3 {
        return None;
    }
    // The adverb moves into the middle of a sentence, so it loses its capital: "Never use emoji".
    let mut request = third_person(&tokens[prefix_len..]);
    request[0] = adverb.clone();
    let fact = format!("User wants the assistant to {}", finish_fact(&request));
    Some(Finding { fact, kind: CandidateKind::Assert, topic: PREFERENCES, confidence: 0.85 })
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
fn expand_possessive_copula(tokens: &[String], lower: &[String]) -> Vec<String> {
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

/// A first-person clause (or a clause to remember or forget) in the third person, with changes
/// restated as the state they lead to.
fn restate(tokens: &[String], lower: &[String]) -> Vec<String> {
    let restated = no_longer_form(tokens, lower)
        .or_else(|| changed_possession_form(tokens, lower))
        .or_else(|| moved_to_form(tokens, lower));
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

/// "I moved to Berlin" -> "I live in Berlin", when nothing but the place follows: "I moved to
/// Berlin in 2019" is history, and stays as said.
fn moved_to_form(tokens: &[String], lower: &[String]) -> Option<Vec<String>> {
    let verb_idx = perfect_verb_idx(lower)?;
    if !matches!(lower[verb_idx].as_str(), "moved" | "relocated") || lower.get(verb_idx + 1)? != "to" {
        return None;
    }
    let place = &tokens[verb_idx + 2..];
    let place_is_plain = !place.is_empty()
        && place.len() <= 4
        && lower[verb_idx + 2..].iter().all(|word| !NOT_A_PLACE.contains(&word.as_str()));
    if !place_is_plain {
        return None;
    }
    let mut restated = words(&["I", "live", "in"]);
    restated.extend_from_slice(place);
    Some(restated)
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

// Rewriting in the third person.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contraction {
    /// A bare "I".
    Plain,
    Am,
    Have,
    Will,
    Would,
}

fn first_person_contraction(lower: &str) -> Option<Contraction> {
    Some(match lower {
        "i" => Contraction::Plain,
        "i'm" | "im" => Contraction::Am,
        "i've" | "ive" => Contraction::Have,
        "i'll" => Contraction::Will,
        "i'd" => Contraction::Would,
        _ => return None,
    })
}

fn is_first_person_subject(lower: &str) -> bool {
    first_person_contraction(lower).is_some()
}

/// Replaces the first person with "User", conjugating the verb that follows each "I"; every other
/// word stays as written.
fn third_person(tokens: &[String]) -> Vec<String> {
    let mut rewritten = Vec::with_capacity(tokens.len() + 1);
    let mut idx = 0;
    while idx < tokens.len() {
        let (lead, core, trail) = split_affixes(&tokens[idx]);
        let lower = core.to_lowercase();
        if let Some(contraction) = first_person_contraction(&lower) {
            rewritten.push(format!("{lead}User"));
            idx = conjugate_after_subject(tokens, idx + 1, contraction, &mut rewritten);
            continue;
        }
        let replacement = match lower.as_str() {
            "my" | "mine" => Some("User's"),
            "me" => Some("User"),
            "myself" => Some("themselves"),
            _ => None,
        };
        rewritten.push(match replacement {
            Some(replacement) => format!("{lead}{replacement}{trail}"),
            None => tokens[idx].clone(),
        });
        idx += 1;
    }
    rewritten
}

/// Writes the verb group after a first-person subject in the third person; returns the index of
/// the first token it did not consume.
fn conjugate_after_subject(
    tokens: &[String],
    mut idx: usize,
    contraction: Contraction,
    out: &mut Vec<String>,
) -> usize {
    let auxiliary = match contraction {
        Contraction::Plain => None,
        Contraction::Am => Some("is"),
        Contraction::Have => Some("has"),
        Contraction::Will => Some("will"),
        // "I'd been" is "I had been"; "I'd like" is "I would like".
        Contraction::Would => match tokens.get(idx).map(|token| bare(token)).as_deref() {
            Some("been" | "had" | "gone" | "done" | "seen" | "never" | "already") => Some("had"),
            _ => Some("would"),
        },
    };
    if let Some(auxiliary) = auxiliary {
        out.push(auxiliary.to_owned());
        return idx;
    }
    while idx < tokens.len() {
        let lower = bare(&tokens[idx]);
        if lower == "no" && tokens.get(idx + 1).is_some_and(|token| bare(token) == "longer") {
            out.extend_from_slice(&tokens[idx..idx + 2]);
            idx += 2;
            continue;
        }
        if is_adverb(&lower) {
            out.push(tokens[idx].clone());
            idx += 1;
            continue;
        }
        let (lead, core, trail) = split_affixes(&tokens[idx]);
        out.push(format!("{lead}{}{trail}", conjugate_first_person_verb(core)));
        return idx + 1;
    }
    idx
}

/// The third-person form of a verb said after "I".
fn conjugate_first_person_verb(verb: &str) -> String {
    let lower = verb.to_lowercase();
    let irregular = match lower.as_str() {
        "am" => "is",
        "have" => "has",
        "haven't" | "havent" => "hasn't",
        "do" => "does",
        "don't" | "dont" => "doesn't",
        "ain't" => "isn't",
        "wanna" => "wants to",
        "gonna" => "is going to",
        _ => "",
    };
    if !irregular.is_empty() {
        return irregular.to_owned();
    }
    if UNCHANGED_AFTER_I.contains(&lower.as_str()) || is_past(&lower) {
        return verb.to_owned();
    }
    third_person_singular(verb)
}

/// go -> goes, watch -> watches, study -> studies, play -> plays, live -> lives.
fn third_person_singular(verb: &str) -> String {
    let lower = verb.to_lowercase();
    match lower.as_str() {
        "be" => return "is".to_owned(),
        "have" => return "has".to_owned(),
        "do" | "go" | "echo" | "veto" => return format!("{verb}es"),
        _ => {}
    }
    let mut letters = lower.chars().rev();
    let last = letters.next();
    let before_last = letters.next();
    let after_consonant = before_last.is_some_and(|ch| ch.is_alphabetic() && !"aeiou".contains(ch));
    if ["s", "sh", "ch", "x", "z"].iter().any(|ending| lower.ends_with(ending))
        || (last == Some('o') && after_consonant)
    {
        return format!("{verb}es");
    }
    if last == Some('y') && after_consonant {
        return format!("{}ies", &verb[..verb.len() - 1]);
    }
    format!("{verb}s")
}

fn is_past(lower: &str) -> bool {
    IRREGULAR_PAST.contains(&lower)
        || (lower.len() > 3 && lower.ends_with("ed") && !PRESENT_ENDING_IN_ED.contains(&lower))
}

fn is_adverb(lower: &str) -> bool {
    ADVERBS.contains(&lower) || (lower.len() > 4 && lower.ends_with("ly") && !VERBS_ENDING_IN_LY.contains(&lower))
}

/// Splits a token into leading punctuation, the word, and trailing punctuation: `("(", "me", "),")`.
fn split_affixes(token: &str) -> (&str, &str, &str) {
    let start = token.find(char::is_alphanumeric).unwrap_or(token.len());
    let end = token
        .rfind(char::is_alphanumeric)
        .map_or(start, |idx| idx + token[idx..].chars().next().map_or(1, char::len_utf8));
    (&token[..start], &token[start..end.max(start)], &token[end.max(start)..])
}

fn finish_fact(tokens: &[String]) -> String {
    trim_trailing_punctuation(tokens.join(" ").trim()).to_owned()
}

fn trim_trailing_punctuation(text: &str) -> &str {
    text.trim_end_matches(['.', ',', '!', '?', ';', ':', '\u{2026}', '"', '\u{201D}', ')', ']', '*', '_', ' ', '-'])
}

// Reading third-person facts.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tense {
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
struct ParsedFact {
    /// What of the user's the fact is about ("User's <owner> ..."); empty for "User ...".
    owner: Vec<String>,
    /// Lowercase, spelling standardised, with adverbs, negation and do-support removed, "is/are"
    /// as "be", "has" as "have", and a simple present head verb in its base form.
    predicate: Vec<String>,
    tense: Tense,
    /// "no longer", "used to", "anymore": the fact reports a change.
    changed: bool,
}

fn parse_fact(fact: &str) -> Option<ParsedFact> {
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

struct Auxiliary {
    /// The word kept in the predicate: "be" for is/are, "have" for has, the modal itself; `None`
    /// for do-support.
    canonical: Option<&'static str>,
    tense: Option<Tense>,
}

fn auxiliary(lower: &str) -> Option<Auxiliary> {
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
fn is_verb_form(lower: &str) -> bool {
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
fn statement_topic(parsed: &ParsedFact) -> Option<(&'static str, f64)> {
    let predicate = &parsed.predicate;
    if !parsed.owner.is_empty() {
        if predicate.is_empty() || predicate.iter().all(|word| is_function_word(word)) {
            return None;
        }
        if parsed.owner[0] == "favourite" {
            return Some((PREFERENCES, 0.9));
        }
        let is_copula = matches!(predicate[0].as_str(), "be" | "was");
        return Some((PERSONAL_INFO, if is_copula { 0.9 } else { 0.8 }));
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

fn is_plan(parsed: &ParsedFact) -> bool {
    let predicate = &parsed.predicate;
    starts_with_any(predicate, PLAN_PHRASES)
        || (parsed.tense == Tense::Modal && !matches!(predicate.first().map(String::as_str), Some("can" | "could")))
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
fn specific_attribute(predicate: &[String]) -> Option<String> {
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
fn opinion_object(predicate: &[String]) -> Option<String> {
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

// Topics.

/// Settles a finding's topic against the topics a request asked for.
struct TopicChooser {
    managed: Vec<String>,
    /// Custom topics in request order, each with the stemmed content words of its name and
    /// description.
    custom: Vec<(String, Vec<String>)>,
}

impl TopicChooser {
    fn new(config: &GenerationConfig) -> TopicChooser {
        let mut managed = Vec::new();
        let mut custom = Vec::new();
        for spec in config.effective_topics() {
            if MANAGED_TOPICS.contains(&spec.name.as_str()) {
                managed.push(spec.name);
            } else {
                let text = format!("{} {}", spec.name, spec.description.as_deref().unwrap_or_default());
                custom.push((spec.name, content_words(&text)));
            }
        }
        TopicChooser { managed, custom }
    }

    fn choose(&self, finding: &Finding) -> Option<String> {
        if !self.custom.is_empty() {
            let fact_words = content_words(&finding.fact);
            let custom =
                self.custom.iter().find(|(_, topic_words)| topic_words.iter().any(|word| fact_words.contains(word)));
            if let Some((name, _)) = custom {
                return Some(name.clone());
            }
        }
        self.managed.iter().find(|name| *name == finding.topic).cloned()
    }
}

/// Lowercase, stemmed words that carry meaning: "User's two cats" -> ["two", "cat"].
fn content_words(text: &str) -> Vec<String> {
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

// Words.

/// A token lowercased, with surrounding punctuation and quotes removed; inner apostrophes stay.
fn bare(token: &str) -> String {
    token
        .trim_matches(|ch: char| !ch.is_alphanumeric())
        .to_lowercase()
        .replace(['\u{2019}', '\u{2018}', '\u{02BC}'], "'")
}

fn lower_words(tokens: &[String]) -> Vec<String> {
    tokens.iter().map(|token| bare(token)).collect()
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|word| (*word).to_owned()).collect()
}

fn phrase_len(phrase: &str) -> usize {
    phrase.split(' ').count()
}

fn starts_with_phrase(lower: &[String], phrase: &str) -> bool {
    let mut n_matched = 0;
    for (idx, expected) in phrase.split(' ').enumerate() {
        if lower.get(idx).is_none_or(|word| word != expected) {
            return false;
        }
        n_matched += 1;
    }
    n_matched > 0
}

fn starts_with_any(lower: &[String], phrases: &[&str]) -> bool {
    phrases.iter().any(|phrase| starts_with_phrase(lower, phrase))
}

fn ends_with_phrase(lower: &[String], phrase: &str) -> bool {
    let len = phrase_len(phrase);
    lower.len() > len && starts_with_phrase(&lower[lower.len() - len..], phrase)
}

fn is_function_word(lower: &str) -> bool {
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
fn standard_spelling(lower: &str) -> String {
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

/// Never end a sentence: "Dr. Smith".
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "e.g", "i.e", "approx", "mt", "ft", "sgt", "capt", "lt",
    "rev", "vol", "cf", "al", "ave", "blvd", "dept",
];

/// End a sentence only when a capital follows: "6 a.m. every day" but "I work at Acme Inc. It".
const ABBREVIATIONS: &[&str] = &[
    "a.m", "p.m", "u.s", "u.k", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec",
];

/// After a comma, these start a clause that qualifies the main one: "I'm vegan, so ...".
const SUBORDINATORS: &[&str] =
    &["so", "but", "which", "because", "although", "though", "since", "while", "whereas", "unless", "if", "as"];

const CLAUSE_CONJUNCTIONS: &[&str] =
    &["and", "but", "so", "plus", "although", "though", "because", "cause", "whereas", "while"];

/// Greetings and discourse markers before the statement proper; longer phrases first.
const LEAD_INS: &[&str] = &[
    "just so you know",
    "for your information",
    "for the record",
    "by the way",
    "to be honest",
    "as i said",
    "as i mentioned",
    "as i told you",
    "like i said",
    "i told you that",
    "i told you",
    "i mentioned that",
    "i said that",
    "in fact",
    "these days",
    "oh and",
    "and also",
    "fyi",
    "btw",
    "tbh",
    "actually",
    "also",
    "and",
    "but",
    "so",
    "well",
    "oh",
    "ah",
    "um",
    "uh",
    "hmm",
    "now",
    "ok",
    "okay",
    "hi",
    "hello",
    "hey",
    "yes",
    "yeah",
    "yep",
    "no",
    "nope",
    "anyway",
    "anyways",
    "honestly",
    "currently",
    "nowadays",
    "plus",
    "besides",
    "however",
    "sure",
    "right",
    "alright",
    "cool",
    "great",
    "thanks",
    "thank you",
    "haha",
    "lol",
];

const TRAILERS: &[&str] = &["thank you", "by the way", "thanks", "thx", "please", "lol", "haha", "btw", "anyway"];

/// Ways of asking the assistant to do something, before "remember" or "forget".
const REQUEST_PREFIXES: &[&str] = &[
    "can you",
    "could you",
    "would you",
    "will you",
    "i want you to",
    "i would like you to",
    "i'd like you to",
    "i need you to",
    "make sure you",
    "make sure to",
    "make sure that you",
    "be sure to",
];

const REMEMBER_PHRASES: &[&str] = &[
    "remember",
    "don't forget",
    "dont forget",
    "do not forget",
    "never forget",
    "keep in mind",
    "bear in mind",
    "note that",
    "make a note that",
    "make a note",
    "take note that",
    "take note",
];

const FORGET_PHRASES: &[&str] =
    &["forget", "don't remember", "dont remember", "do not remember", "stop remembering", "no longer remember"];

/// After "remember": a reminder, a question or a pronoun, not a fact.
const REMEMBER_VAGUE: &[&str] = &[
    "to",
    "when",
    "what",
    "how",
    "who",
    "where",
    "why",
    "which",
    "whether",
    "if",
    "me",
    "it",
    "this",
    "that",
    "everything",
    "anything",
    "all",
    "us",
    "him",
    "her",
    "them",
    "those",
    "these",
];

/// After "forget": too vague to delete anything by.
const FORGET_VAGUE: &[&str] = &[
    "it",
    "that",
    "this",
    "everything",
    "anything",
    "all",
    "what",
    "whatever",
    "me",
    "him",
    "her",
    "them",
    "us",
    "those",
    "these",
    "earlier",
    "previous",
];

const FORGET_VAGUE_PHRASES: &[&str] =
    &["i just said", "i typed", "my last", "my previous", "the thing", "that thing", "the last", "the previous"];

/// Filler, in the spelling of [`expand_contractions`]: no contractions, no intensifiers.
const FILLER_PREFIXES: &[&str] = &[
    "i think",
    "i guess",
    "i see what",
    "i see that",
    "i see you",
    "i see it",
    "i see now",
    "i see why",
    "i see how",
    "i see so",
    "i mean",
    "i meant",
    "i agree",
    "i disagree",
    "i am not sure",
    "i am unsure",
    "i do not know",
    "i dunno",
    "i do not think",
    "i do not remember",
    "i can not remember",
    "i remember",
    "i am glad",
    "i am sorry",
    "i am happy to hear",
    "i am happy that",
    "i am happy you",
    "i understand",
    "i wonder",
    "i was wondering",
    "i am wondering",
    "i suppose",
    "i believe so",
    "i believe that",
    "i believe you",
    "i believe it",
    "i would say",
    "i feel like",
    "i feel that",
    "i know that",
    "i know what",
    "i know you",
    "i know it",
    "i know right",
    "i know i",
    "i know why",
    "i know how",
    "i get it",
    "i got it",
    "i got you",
    "i am curious",
    "i was curious",
    "i am asking",
    "i was asking",
    "i asked",
    "i want to know",
    "i would like to know",
    "i would like to ask",
    "i want to ask",
    "i wanted to ask",
    "i wanted to know",
    "i wanted to",
    "i need help",
    "i need some help",
    "i need your help",
    "i would like help",
    "i would like some help",
    "i appreciate",
    "i would appreciate",
    "i am sure",
    "i bet",
    "i doubt",
    "i am afraid not",
    "i am afraid so",
    "i am afraid that",
    "i am afraid i",
    "i can see",
    "i can not believe",
    "i changed my mind",
    "i have changed my mind",
    "i am saying",
    "i will let you",
    "i will think about",
    "i will try",
    "i will check",
    "i will do that",
    "i will do it",
    "i will see",
    "i will remember",
    "i am kidding",
    "i was kidding",
    "i am joking",
    "i was joking",
    "i am not kidding",
    "i said",
    "i told you",
    "i did not mean",
    "i did not know",
    "i had no idea",
    "i have no idea",
    "i have to say",
    "i must say",
    "i take it",
    "i am with you",
    "i would love to hear",
    "i would like to hear",
    "i need you to",
    "i want you to",
    "thanks",
    "thank you",
    "thx",
    "cheers",
    "never mind",
    "nevermind",
    "no worries",
    "my bad",
    "my pleasure",
    "my apologies",
    "my god",
    "my goodness",
    "my gosh",
    "my question",
    "my point",
    "my guess",
    "my understanding",
    "my concern",
    "my request",
    "my mistake",
    "my fault",
    "my turn",
    "my answer",
    "my issue",
    "my problem",
    "my thoughts",
    "my thought",
    "my opinion",
    "my take",
];

/// Dropped by [`expand_contractions`] before matching filler: "I'm so sorry" is "I am sorry".
const INTENSIFIERS: &[&str] = &[
    "so",
    "really",
    "very",
    "just",
    "totally",
    "truly",
    "actually",
    "honestly",
    "kinda",
    "pretty",
    "quite",
    "completely",
    "absolutely",
    "still",
    "also",
];

/// How the user is right now: "I'm tired", "I'm doing well".
const PASSING_STATES: &[&str] = &[
    "dying",
    "crying",
    "laughing",
    "new",
    "fine",
    "good",
    "ok",
    "okay",
    "great",
    "well",
    "alright",
    "tired",
    "bored",
    "back",
    "here",
    "ready",
    "done",
    "confused",
    "lost",
    "busy",
    "excited",
    "sure",
    "curious",
    "happy",
    "sad",
    "glad",
    "sorry",
    "hungry",
    "thirsty",
    "sleepy",
    "stuck",
    "cool",
    "listening",
    "kidding",
    "joking",
    "serious",
    "impressed",
    "grateful",
    "thankful",
    "awake",
    "home",
    "free",
    "stressed",
    "worried",
    "nervous",
    "better",
    "worse",
    "annoyed",
    "frustrated",
    "upset",
    "amazed",
    "surprised",
    "exhausted",
    "sick",
    "there",
    "right",
    "wrong",
    "correct",
    "interested",
    "in",
    "out",
];

const STATE_TAIL: &[&str] = &[
    "today",
    "now",
    "tonight",
    "right",
    "then",
    "though",
    "too",
    "lol",
    "haha",
    "thanks",
    "thank",
    "you",
    "anyway",
    "again",
    "already",
    "atm",
    "at",
    "the",
    "moment",
    "this",
    "morning",
    "evening",
    "afternoon",
    "week",
    "much",
];

/// Between "I" and its verb: "I really like", "I never eat".
const ADVERBS: &[&str] = &[
    "always",
    "usually",
    "often",
    "sometimes",
    "rarely",
    "seldom",
    "still",
    "also",
    "really",
    "just",
    "actually",
    "currently",
    "recently",
    "absolutely",
    "totally",
    "generally",
    "mostly",
    "only",
    "even",
    "truly",
    "definitely",
    "normally",
    "typically",
    "occasionally",
    "mainly",
    "now",
    "already",
    "finally",
    "honestly",
    "literally",
    "kinda",
    "sorta",
    "personally",
    "especially",
    "frequently",
    "hardly",
    "barely",
    "probably",
    "certainly",
    "basically",
    "obviously",
    "originally",
    "never",
    "ever",
    "too",
    "so",
    "much",
    "very",
    "def",
];

const VERBS_ENDING_IN_LY: &[&str] =
    &["apply", "reply", "supply", "multiply", "comply", "imply", "bully", "tally", "rally"];

/// After "I", these keep their form: modals and past tenses.
const UNCHANGED_AFTER_I: &[&str] = &[
    "can",
    "can't",
    "cant",
    "cannot",
    "could",
    "couldn't",
    "will",
    "won't",
    "would",
    "wouldn't",
    "should",
    "shouldn't",
    "might",
    "mightn't",
    "must",
    "mustn't",
    "may",
    "shall",
    "did",
    "didn't",
    "didnt",
    "was",
    "wasn't",
    "had",
    "hadn't",
    "used",
    "gotta",
];

const MODALS: &[&str] = &["will", "would", "can", "could", "should", "might", "must", "may", "shall"];

const IRREGULAR_PAST: &[&str] = &[
    "was",
    "were",
    "had",
    "did",
    "went",
    "got",
    "made",
    "came",
    "saw",
    "took",
    "gave",
    "found",
    "left",
    "met",
    "grew",
    "began",
    "became",
    "bought",
    "brought",
    "thought",
    "told",
    "said",
    "knew",
    "felt",
    "kept",
    "lost",
    "ran",
    "wrote",
    "sold",
    "sent",
    "spent",
    "built",
    "taught",
    "caught",
    "fought",
    "won",
    "ate",
    "drank",
    "drove",
    "flew",
    "forgot",
    "broke",
    "chose",
    "spoke",
    "stole",
    "swam",
    "sang",
    "sat",
    "stood",
    "slept",
    "heard",
    "held",
    "paid",
    "fell",
    "understood",
    "woke",
    "wore",
    "rode",
    "threw",
    "hid",
    "led",
    "lent",
    "meant",
    "dealt",
    "shot",
    "shut",
    "struck",
    "swore",
    "tore",
    "wept",
    "quit",
    "born",
    "been",
    "done",
    "gone",
    "seen",
    "taken",
    "given",
    "known",
    "grown",
    "written",
    "eaten",
    "driven",
    "spoken",
    "broken",
    "chosen",
    "forgotten",
    "gotten",
    "begun",
    "sung",
    "swum",
    "flown",
    "worn",
    "thrown",
    "hidden",
    "ridden",
    "fallen",
    "risen",
    "rose",
    "shook",
    "shaken",
];

const PRESENT_ENDING_IN_ED: &[&str] = &[
    "need", "feed", "bleed", "breed", "speed", "succeed", "proceed", "exceed", "heed", "embed", "shed", "shred",
    "seed", "weed",
];

/// Third-person verbs that mark the predicate in "my sister lives in Rome".
const THIRD_PERSON_VERBS: &[&str] = &[
    "lives", "works", "likes", "loves", "hates", "enjoys", "prefers", "plays", "goes", "studies", "teaches", "owns",
    "speaks", "drives", "runs", "eats", "drinks", "wants", "needs", "uses", "gets", "makes", "takes", "comes", "says",
    "thinks", "knows", "hurts", "starts", "ends", "begins", "costs", "weighs", "reads", "writes", "sings", "cooks",
    "attends", "belongs", "looks", "sounds", "means", "stays", "visits", "calls", "lasts", "leaves", "arrives",
    "departs", "expires",
];

/// Clause words that never make a topic match and never make an object.
const FUNCTION_WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "and",
    "or",
    "but",
    "if",
    "of",
    "to",
    "in",
    "on",
    "at",
    "for",
    "with",
    "about",
    "from",
    "by",
    "as",
    "into",
    "onto",
    "over",
    "under",
    "up",
    "down",
    "out",
    "off",
    "than",
    "then",
    "so",
    "too",
    "very",
    "much",
    "many",
    "more",
    "most",
    "lot",
    "lots",
    "just",
    "really",
    "also",
    "still",
    "even",
    "only",
    "quite",
    "pretty",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "am",
    "has",
    "have",
    "had",
    "having",
    "do",
    "does",
    "did",
    "done",
    "doing",
    "not",
    "no",
    "it",
    "its",
    "it's",
    "this",
    "that",
    "these",
    "those",
    "there",
    "here",
    "them",
    "they",
    "their",
    "theirs",
    "themselves",
    "he",
    "him",
    "his",
    "she",
    "her",
    "hers",
    "we",
    "us",
    "our",
    "you",
    "your",
    "yours",
    "you're",
    "i",
    "me",
    "my",
    "mine",
    "user",
    "user's",
    "users",
    "one",
    "ones",
    "some",
    "any",
    "all",
    "both",
    "each",
    "either",
    "neither",
    "well",
    "will",
    "would",
    "can",
    "could",
    "should",
    "might",
    "must",
    "may",
    "shall",
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "when",
    "where",
    "why",
    "how",
    "anymore",
    "now",
    "again",
    "already",
    "yet",
    "okay",
    "ok",
    "yes",
    "yeah",
    "thing",
    "things",
    "something",
    "anything",
    "everything",
    "nothing",
    "stuff",
    "lol",
    "haha",
    "get",
    "got",
    "gotten",
    "either",
    "such",
];

/// Words of a topic description that say nothing about its subject ("information about the user").
const TOPIC_NOISE: &[&str] = &[
    "information",
    "info",
    "detail",
    "details",
    "fact",
    "facts",
    "related",
    "regarding",
    "include",
    "including",
    "like",
    "such",
];

const ASSISTANT_WORDS: &[&str] = &["you", "your", "yours", "you're", "u", "ya", "yourself"];

/// Places are short and plain: "moved to Berlin" but not "moved to Berlin in 2019 for work".
const NOT_A_PLACE: &[&str] = &[
    "in",
    "on",
    "at",
    "last",
    "ago",
    "when",
    "because",
    "since",
    "after",
    "before",
    "with",
    "for",
    "from",
    "during",
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "recently",
    "yesterday",
    "back",
    "and",
    "but",
];

const PLAN_PHRASES: &[&str] = &[
    "have to",
    "have got to",
    "got to",
    "be planning",
    "plan to",
    "plan on",
    "be going to",
    "be gonna",
    "be thinking about",
    "be thinking of",
    "want to",
    "want",
    "intend to",
    "hope to",
    "be hoping to",
    "be about to",
    "be considering",
    "consider",
    "be looking forward to",
    "look forward to",
    "be moving",
    "be starting",
    "be getting",
    "be trying to",
    "try to",
    "need to",
    "be due to",
    "be scheduled to",
    "be supposed to",
    "be leaving",
    "be visiting",
    "be flying",
    "be travelling",
    "be traveling",
    "be heading",
    "aim to",
    "be aiming to",
    "be preparing",
    "be saving",
];

const OPINION_PHRASES: &[&str] = &[
    "like",
    "love",
    "enjoy",
    "prefer",
    "hate",
    "dislike",
    "adore",
    "detest",
    "loathe",
    "mind",
    "can stand",
    "can bear",
    "be fond of",
    "be into",
    "be a fan of",
    "be a big fan of",
    "be a huge fan of",
    "be interested in",
    "be passionate about",
    "be obsessed with",
    "be crazy about",
    "be keen on",
    "favour",
];

const ATTRIBUTE_PHRASES: &[(&[&str], &str)] = &[
    (
        &[
            "live in",
            "live at",
            "lived in",
            "lived at",
            "moved to",
            "moved from",
            "moved back to",
            "relocated to",
            "have moved to",
            "have moved from",
            "have lived in",
            "have relocated to",
            "be living in",
            "be based in",
            "reside in",
            "be located in",
            "be residing in",
            "have been living in",
        ],
        "residence",
    ),
    (&["work as", "worked as", "be working as", "have worked as", "be employed as"], "occupation"),
    (
        &[
            "work at",
            "work for",
            "worked at",
            "worked for",
            "be working at",
            "be working for",
            "have worked at",
            "have worked for",
            "have been working at",
            "have been working for",
            "be employed at",
            "be employed by",
            "was employed at",
            "was employed by",
        ],
        "employer",
    ),
    (&["be called", "be named", "go by"], "name"),
    (&["be from", "come from", "grew up in", "was raised in", "was brought up in"], "origin"),
];

/// Past events that are lasting facts about the user rather than details of one conversation.
const PERSONAL_PAST: &[&str] = &[
    "started",
    "joined",
    "got a job",
    "got a new job",
    "got engaged",
    "had a baby",
    "was born",
    "grew up",
    "graduated",
    "got married",
    "got divorced",
    "was raised",
    "moved",
    "lived",
    "worked",
    "studied",
    "was a",
    "was an",
    "retired",
    "relocated",
];

/// A past like or dislike still says what the user likes: "I loved The Hobbit".
const PAST_OPINIONS: &[&str] = &["liked", "loved", "enjoyed", "hated", "disliked", "adored"];

/// Said after the object, about the liking rather than the thing liked: "coffee a lot".
const TRAILING_QUALIFIERS: &[&str] = &[
    "very",
    "much",
    "a",
    "lot",
    "so",
    "too",
    "either",
    "now",
    "anymore",
    "any",
    "more",
    "nowadays",
    "these",
    "days",
    "as",
    "well",
    "anyway",
    "though",
    "really",
    "right",
    "today",
    "tonight",
    "currently",
];

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use uuid::Uuid;

    use super::*;
    use crate::generation::TopicSpec;

    fn turn(role: Role, content: &str) -> Turn {
        Turn { event_id: Uuid::new_v4(), role, author: "someone".to_owned(), content: content.to_owned() }
    }

    fn config_with(topics: &[(&str, Option<&str>)]) -> GenerationConfig {
        GenerationConfig {
            topics: topics
                .iter()
                .map(|(name, description)| TopicSpec {
                    name: (*name).to_owned(),
                    description: description.map(str::to_owned),
                })
                .collect(),
            ..GenerationConfig::default()
        }
    }

    /// The (fact, topic) pairs one user turn yields with the managed topics.
    fn extract(content: &str) -> Vec<(String, String)> {
        extract_with(content, &GenerationConfig::default())
    }

    fn extract_with(content: &str, config: &GenerationConfig) -> Vec<(String, String)> {
        extract_facts(&[turn(Role::User, content)], config)
            .into_iter()
            .map(|candidate| (candidate.fact, candidate.topic))
            .collect()
    }

    #[track_caller]
    fn check(content: &str, expected: &[(&str, &str)]) {
        let expected: Vec<(String, String)> =
            expected.iter().map(|(fact, topic)| ((*fact).to_owned(), (*topic).to_owned())).collect();
        assert_eq!(extract(content), expected, "extracting from {content:?}");
    }

    #[track_caller]
    fn check_one(content: &str, fact: &str, topic: &str) {
        check(content, &[(fact, topic)]);
    }

    #[track_caller]
    fn check_nothing(content: &str) {
        check(content, &[]);
    }

    #[test]
    fn rewrites_statements_in_the_third_person() {
        check_one("I live in Paris", "User lives in Paris", PERSONAL_INFO);
        check_one("my favourite colour is blue", "User's favourite colour is blue", PREFERENCES);
        check_one("I'm a nurse.", "User is a nurse", PERSONAL_INFO);
        check_one("I have two cats", "User has two cats", PERSONAL_INFO);
        check_one("I don't eat meat", "User doesn't eat meat", PREFERENCES);
        check_one("I no longer drink coffee", "User no longer drinks coffee", PREFERENCES);
        check_one("I've been to Japan", "User has been to Japan", PERSONAL_INFO);
        check_one("I was born in 1990", "User was born in 1990", PERSONAL_INFO);
        check_one("I'm 34 years old", "User is 34 years old", PERSONAL_INFO);
        check_one("My name is Sam", "User's name is Sam", PERSONAL_INFO);
        check_one("my name's Sam", "User's name is Sam", PERSONAL_INFO);
        check_one("I work as a software engineer at Acme", "User works as a software engineer at Acme", PERSONAL_INFO);
        check_one("I'm allergic to peanuts!", "User is allergic to peanuts", PERSONAL_INFO);
    }

    #[test]
    fn conjugates_english_verbs() {
        check_one("I go hiking every weekend", "User goes hiking every weekend", PERSONAL_INFO);
        check_one("I watch anime at night", "User watches anime at night", PERSONAL_INFO);
        check_one("I study physics at MIT", "User studies physics at MIT", PERSONAL_INFO);
        check_one("I do yoga every morning", "User does yoga every morning", PERSONAL_INFO);
        check_one("I play the piano", "User plays the piano", PERSONAL_INFO);
        check_one("I fix old radios", "User fixes old radios", PERSONAL_INFO);
        check_one("I really miss my grandmother", "User really misses User's grandmother", PERSONAL_INFO);
        check_one("I can speak French", "User can speak French", PERSONAL_INFO);
        check_one("I taught myself Spanish", "User taught themselves Spanish", CONVERSATION_DETAILS);
        check_one("I live with my parents", "User lives with User's parents", PERSONAL_INFO);
        check_one("I need to renew my passport", "User needs to renew User's passport", CONVERSATION_DETAILS);
        check_one("I visited Rome last year", "User visited Rome last year", CONVERSATION_DETAILS);
        check_one("i live in paris", "User lives in paris", PERSONAL_INFO);
        check_one("I’m a teacher", "User is a teacher", PERSONAL_INFO);
        check_one("I'd been to Peru twice", "User had been to Peru twice", CONVERSATION_DETAILS);
    }

    #[test]
    fn files_preferences() {
        check_one("I love hiking in the mountains", "User loves hiking in the mountains", PREFERENCES);
        check_one("I enjoy cooking Thai food", "User enjoys cooking Thai food", PREFERENCES);
        check_one("I prefer tea over coffee", "User prefers tea over coffee", PREFERENCES);
        check_one("I hate mornings", "User hates mornings", PREFERENCES);
        check_one("I dislike crowds", "User dislikes crowds", PREFERENCES);
        check_one("I can't stand loud music", "User can't stand loud music", PREFERENCES);
        check_one("I don't like horror movies", "User doesn't like horror movies", PREFERENCES);
        check_one("I like jazz", "User likes jazz", PREFERENCES);
        check_one("My favorite food is sushi", "User's favorite food is sushi", PREFERENCES);
        check_one("I'm a big fan of Tolkien", "User is a big fan of Tolkien", PREFERENCES);
        check_one("I'd rather sit by the window", "User would rather sit by the window", PREFERENCES);
    }

    #[test]
    fn files_plans() {
        check_one(
            "I'm planning to visit Rome next month",
            "User is planning to visit Rome next month",
            CONVERSATION_DETAILS,
        );
        check_one("I plan to retire early", "User plans to retire early", CONVERSATION_DETAILS);
        check_one("I'm going to learn Rust", "User is going to learn Rust", CONVERSATION_DETAILS);
        check_one("I will start a new job on Monday", "User will start a new job on Monday", CONVERSATION_DETAILS);
        check_one("I'll be in London next week", "User will be in London next week", CONVERSATION_DETAILS);
        check_one("I'm thinking about getting a dog", "User is thinking about getting a dog", CONVERSATION_DETAILS);
        check_one("I want to run a marathon", "User wants to run a marathon", CONVERSATION_DETAILS);
        check_one("I wanna learn guitar", "User wants to learn guitar", CONVERSATION_DETAILS);
        check_one("I hope to visit Japan", "User hopes to visit Japan", CONVERSATION_DETAILS);
        check_one("I'd like to visit Japan", "User would like to visit Japan", CONVERSATION_DETAILS);
    }

    #[test]
    fn plan_confidence_is_lower_than_stated_facts() {
        let candidates = extract_facts(
            &[turn(Role::User, "I'm planning to move. I live in Paris. Remember that I'm vegan.")],
            &GenerationConfig::default(),
        );
        let confidences: Vec<f64> = candidates.iter().map(|candidate| candidate.confidence).collect();
        assert_eq!(confidences, vec![0.75, 0.85, 0.95]);
    }

    #[test]
    fn restates_changes_as_the_new_state() {
        check_one("I moved to Berlin", "User lives in Berlin", PERSONAL_INFO);
        check_one("I've just moved to New York City!", "User lives in New York City", PERSONAL_INFO);
        check_one("I moved to Berlin in 2019", "User moved to Berlin in 2019", PERSONAL_INFO);
        check_one("I don't drink coffee anymore", "User no longer drinks coffee", PREFERENCES);
        check_one("I don't live in Paris any more.", "User no longer lives in Paris", PERSONAL_INFO);
        check_one("I'm not vegetarian anymore", "User is no longer vegetarian", PERSONAL_INFO);
        check_one("I changed my email to sam@example.com", "User's email is sam@example.com", PERSONAL_INFO);
        check_one("I changed my favourite colour to green", "User's favourite colour is green", PREFERENCES);
        check_one("Now I prefer tea", "User prefers tea", PREFERENCES);
        check_one("I can't eat gluten anymore", "User can't eat gluten anymore", PREFERENCES);
    }

    #[test]
    fn remembers_on_request() {
        let candidates = extract_facts(
            &[turn(Role::User, "Please remember that I'm allergic to peanuts.")],
            &GenerationConfig::default(),
        );
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].fact, "User is allergic to peanuts");
        assert_eq!(candidates[0].topic, EXPLICIT_INSTRUCTIONS);
        assert_eq!(candidates[0].confidence, 0.95);
        assert_eq!(candidates[0].kind, CandidateKind::Assert);

        check_one("Remember my wife's name is Anna", "User's wife's name is Anna", EXPLICIT_INSTRUCTIONS);
        check_one("Don't forget that my flight is on Friday", "User's flight is on Friday", EXPLICIT_INSTRUCTIONS);
        check_one("Can you remember that I prefer window seats?", "User prefers window seats", EXPLICIT_INSTRUCTIONS);
        check_one("Keep in mind that I don't drink alcohol", "User doesn't drink alcohol", EXPLICIT_INSTRUCTIONS);
        check_one("Remember: the meeting is at 5pm", "the meeting is at 5pm", EXPLICIT_INSTRUCTIONS);
        check_one("I want you to remember that I'm diabetic", "User is diabetic", EXPLICIT_INSTRUCTIONS);
    }

    #[test]
    fn skips_reminders_and_vague_requests() {
        check_nothing("Remember to call my mom");
        check_nothing("Remember this");
        check_nothing("Remember what I said?");
        check_nothing("Don't forget my birthday");
        check_nothing("remember when we met");
    }

    fn forgets(content: &str) -> Vec<(String, CandidateKind)> {
        extract_facts(&[turn(Role::User, content)], &GenerationConfig::default())
            .into_iter()
            .map(|candidate| {
                assert_eq!(candidate.topic, EXPLICIT_INSTRUCTIONS);
                assert_eq!(candidate.confidence, 0.95);
                (candidate.fact, candidate.kind)
            })
            .collect()
    }

    #[test]
    fn forgets_on_request() {
        let forget = |fact: &str| vec![(fact.to_owned(), CandidateKind::Forget)];
        assert_eq!(forgets("Forget my address"), forget("User's address"));
        assert_eq!(forgets("Please forget that I live in Paris."), forget("User lives in Paris"));
        assert_eq!(forgets("forget about my ex"), forget("User's ex"));
        assert_eq!(forgets("Don't remember my phone number, please"), forget("User's phone number"));
        assert_eq!(forgets("Could you forget my favourite color?"), forget("User's favourite color"));
        assert_eq!(forgets("Forget it"), vec![]);
        assert_eq!(forgets("forget what I said"), vec![]);
        assert_eq!(forgets("Forget I said anything"), vec![]);
        assert_eq!(forgets("Forget my address?"), vec![]);
        assert_eq!(forgets("Forget about the thing I said earlier."), vec![]);
        assert_eq!(forgets("Stop remembering my old address please"), forget("User's old address"));
    }

    #[test]
    fn skips_noise() {
        for noise in [
            "I think so.",
            "I guess.",
            "I see what you mean.",
            "I mean, whatever.",
            "I agree",
            "I'm not sure",
            "I don't know",
            "I hope you're right",
            "I'm glad to hear that",
            "I'm so sorry to hear that",
            "I'm happy to hear it",
            "I understand",
            "Thanks!",
            "Thank you so much",
            "ok",
            "What do you think?",
            "Where do I live?",
            "Do you know where I live?",
            "Am I right?",
            "I like your answer",
            "I love it!",
            "I'd love that",
            "You are very helpful",
            "I want you to write a poem",
            "I'm so tired today",
            "I'm doing well, thanks",
            "I have a question about taxes",
            "My question is simple",
            "I'd like a coffee",
            "I do",
            "I'll try",
            "My bad",
            "I changed my mind",
            "I'm so excited about it!!! 🎉",
            "Hi, I'm new here",
            "I guess I'm a night owl.",
            "We live in Oslo.",
            "It's my birthday today!",
            "If I move to Berlin, will I need a visa?",
            "My wife and I live in Rome",
        ] {
            check_nothing(noise);
        }
    }

    #[test]
    fn keeps_facts_that_look_like_moods() {
        check_one("I'm good at chess", "User is good at chess", PERSONAL_INFO);
        check_one("I'm 34", "User is 34", PERSONAL_INFO);
    }

    #[test]
    fn reads_only_user_turns() {
        let turns = [
            turn(Role::Assistant, "I live in the cloud."),
            turn(Role::System, "I am a system prompt about cats."),
            turn(Role::Tool, "I have results."),
            turn(Role::User, "I live in Lisbon."),
        ];
        let facts: Vec<String> =
            extract_facts(&turns, &GenerationConfig::default()).into_iter().map(|candidate| candidate.fact).collect();
        assert_eq!(facts, vec!["User lives in Lisbon"]);
    }

    #[test]
    fn splits_sentences_and_clauses() {
        check(
            "Hi! I'm Sam. I live in Paris, and I work at Acme Corp. What's the weather like?",
            &[
                ("User is Sam", PERSONAL_INFO),
                ("User lives in Paris", PERSONAL_INFO),
                ("User works at Acme Corp", PERSONAL_INFO),
            ],
        );
        check(
            "By the way, my name is Ana and I love jazz; I have a dog\nI hate rain",
            &[
                ("User's name is Ana", PERSONAL_INFO),
                ("User loves jazz", PREFERENCES),
                ("User has a dog", PERSONAL_INFO),
                ("User hates rain", PREFERENCES),
            ],
        );
        check(
            "Well, I think I like it. I moved to Berlin because I got a job there",
            &[("User lives in Berlin", PERSONAL_INFO)],
        );
        check_one("I run 5.5 km every day.", "User runs 5.5 km every day", PERSONAL_INFO);
        check_one("I work with Dr. Smith at the clinic.", "User works with Dr. Smith at the clinic", PERSONAL_INFO);
        check_one("I wake up at 6 a.m. every day", "User wakes up at 6 a.m. every day", PERSONAL_INFO);
        check_one("I told you my name is Bob", "User's name is Bob", PERSONAL_INFO);
    }

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

    #[test]
    fn keeps_the_main_clause() {
        check_one("I'm vegan, so please don't suggest meat", "User is vegan", PERSONAL_INFO);
        check_one("I work from home, which I love.", "User works from home", PERSONAL_INFO);
        check_one("I like apples, pears and plums", "User likes apples, pears and plums", PREFERENCES);
    }

    #[test]
    fn reads_past_and_changed_habits() {
        check(
            "I used to smoke but I quit last year.",
            &[("User used to smoke", PERSONAL_INFO), ("User quit last year", CONVERSATION_DETAILS)],
        );
        check_one("I loved The Hobbit", "User loved The Hobbit", PREFERENCES);
        check_one("I graduated from Stanford in 2015", "User graduated from Stanford in 2015", PERSONAL_INFO);
        check_one("I have to finish my thesis", "User has to finish User's thesis", CONVERSATION_DETAILS);
    }

    #[test]
    fn keeps_standing_requests_as_preferences() {
        check_one(
            "I'd like you to always respond in French.",
            "User wants the assistant to always respond in French",
            PREFERENCES,
        );
        check_one("Never use emoji with me", "User wants the assistant to never use emoji with User", PREFERENCES);
        check_nothing("I'd like you to write a poem");
    }

    #[test]
    fn understands_preferred_names() {
        check_one("Please call me Bob.", "User prefers to be called Bob", PERSONAL_INFO);
        check_nothing("Call me back later");
    }

    #[test]
    fn merges_duplicates_within_a_call() {
        let first = turn(Role::User, "I live in Paris. I LIVE IN PARIS!");
        let second = turn(Role::User, "i live in Paris");
        let third = turn(Role::User, "I like tea");
        let candidates = extract_facts(&[first.clone(), second.clone(), third.clone()], &GenerationConfig::default());
        assert_eq!(candidates.len(), 2);
        assert_eq!(candidates[0].fact, "User lives in Paris");
        assert_eq!(candidates[0].source_event_ids, vec![first.event_id, second.event_id]);
        assert_eq!(candidates[1].fact, "User likes tea");
        assert_eq!(candidates[1].source_event_ids, vec![third.event_id]);
    }

    #[test]
    fn keeps_a_forget_apart_from_the_same_assertion() {
        let candidates = extract_facts(
            &[turn(Role::User, "I live in Paris. Forget that I live in Paris.")],
            &GenerationConfig::default(),
        );
        let kinds: Vec<CandidateKind> = candidates.iter().map(|candidate| candidate.kind).collect();
        assert_eq!(kinds, vec![CandidateKind::Assert, CandidateKind::Forget]);
    }

    #[test]
    fn emits_only_requested_topics() {
        let config = config_with(&[(PREFERENCES, None)]);
        assert_eq!(
            extract_with("I live in Paris. I love jazz. Forget my address.", &config),
            vec![("User loves jazz".to_owned(), PREFERENCES.to_owned())]
        );
    }

    #[test]
    fn files_under_matching_custom_topics() {
        let pets = ("pets", Some("Animals the user owns, such as cats and dogs"));
        let config = config_with(&[pets, (PREFERENCES, None)]);
        assert_eq!(
            extract_with("I have two cats. I love jazz. I live in Oslo.", &config),
            vec![
                ("User has two cats".to_owned(), "pets".to_owned()),
                ("User loves jazz".to_owned(), PREFERENCES.to_owned()),
            ]
        );

        let config = config_with(&[("travel", None), ("food", Some("What the user eats"))]);
        assert_eq!(
            extract_with("I want to travel to Peru. I'm a nurse. I eat a lot of noodles.", &config),
            vec![
                ("User wants to travel to Peru".to_owned(), "travel".to_owned()),
                ("User eats a lot of noodles".to_owned(), "food".to_owned()),
            ]
        );
    }

    #[test]
    fn first_matching_custom_topic_wins() {
        let config = config_with(&[("music", Some("songs and bands")), ("hobbies", Some("music, sports, games"))]);
        assert_eq!(
            extract_with("I play music in a band.", &config),
            vec![("User plays music in a band".to_owned(), "music".to_owned())]
        );
    }

    #[test]
    fn is_deterministic() {
        let content = "Hi! I'm Sam, I live in Paris and I love jazz. Remember that I'm vegan. Forget my address. \
                       I'm planning to visit Rome. My favourite colour is blue.";
        let turns = [turn(Role::User, content), turn(Role::User, content)];
        let first = extract_facts(&turns, &GenerationConfig::default());
        assert_eq!(first.len(), 7);
        for _ in 0..5 {
            assert_eq!(extract_facts(&turns, &GenerationConfig::default()), first);
        }
    }

    fn ready<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("the rules extractor never waits"),
        }
    }

    #[test]
    fn extractor_extracts_and_never_judges() {
        let extractor = RulesExtractor;
        let mut usage = LlmUsage::default();
        let turns = [turn(Role::User, "I live in Paris")];
        let candidates = ready(extractor.extract(&turns, &GenerationConfig::default(), &mut usage)).unwrap();
        assert_eq!(candidates, extract_facts(&turns, &GenerationConfig::default()));
        assert_eq!(usage, LlmUsage::default());

        let verdict = ready(extractor.judge(&candidates[0], &[], &mut usage)).unwrap();
        assert_eq!(verdict, None);
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
        check_attribute("USER LIVES IN PARIS", Some("residence"));
        check_attribute("The user lives in Paris.", Some("residence"));
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
    fn extracted_changes_update_what_they_change() {
        let facts: Vec<String> = extract_facts(
            &[
                turn(Role::User, "I live in Paris. I like coffee."),
                turn(Role::User, "I moved to Berlin. I don't like coffee anymore."),
            ],
            &GenerationConfig::default(),
        )
        .into_iter()
        .map(|candidate| candidate.fact)
        .collect();
        assert_eq!(
            facts,
            vec!["User lives in Paris", "User likes coffee", "User lives in Berlin", "User no longer likes coffee"]
        );
        assert_eq!(attribute_of(&facts[0]), attribute_of(&facts[2]));
        assert_eq!(attribute_of(&facts[1]), attribute_of(&facts[3]));
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
