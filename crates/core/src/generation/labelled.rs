//! The rules extractor scored on hand-labelled conversations (`test_data/labelled_conversations.txt`):
//! precision and recall of the facts a job would keep (extraction, then the settling within the
//! job that drops replaced values and forgotten facts). The floors are the figures measured when
//! the set was written (BENCHMARKS.md), so a change that loses facts or invents them fails here.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::consolidate::settle_within_job;
use super::rules::extract_facts;
use super::{CandidateKind, GenerationConfig, Turn};
use crate::Role;
use crate::grammar::{content_words, normalise};

struct Conversation {
    name: String,
    turns: Vec<Turn>,
    expected: Vec<String>,
}

fn conversations(text: &str) -> Vec<Conversation> {
    let said_at: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().expect("a time");
    let mut conversations: Vec<Conversation> = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && (line.starts_with("## ") || !line.starts_with('#')))
    {
        if let Some(name) = line.strip_prefix("## ") {
            conversations.push(Conversation { name: name.to_owned(), turns: Vec::new(), expected: Vec::new() });
            continue;
        }
        let conversation = conversations.last_mut().expect("a line after a \"## \" heading");
        if let Some(fact) = line.strip_prefix("=> ") {
            conversation.expected.push(fact.to_owned());
        } else {
            let (role, content) = match line.split_once(": ") {
                Some(("user", content)) => (Role::User, content),
                Some(("assistant", content)) => (Role::Assistant, content),
                _ => panic!("not a turn, a fact or a heading: {line:?}"),
            };
            let event_id = Uuid::from_u128(conversation.turns.len() as u128 + 1);
            let (author, content) = (role.as_str().to_owned(), content.to_owned());
            conversation.turns.push(Turn { event_id, role, author, content, said_at });
        }
    }
    conversations
}

/// Whether two facts say the same: the same words, or content words that mostly agree (at least
/// half of those of either fact in common).
fn same_fact(found: &str, expected: &str) -> bool {
    if normalise(found) == normalise(expected) {
        return true;
    }
    let found: HashSet<String> = content_words(found).into_iter().collect();
    let expected: HashSet<String> = content_words(expected).into_iter().collect();
    let common = found.intersection(&expected).count() as f64;
    !expected.is_empty() && common / found.len().max(expected.len()) as f64 >= 0.5
}

/// Matched, found and expected counts over every conversation; what was missed or extra is
/// printed (`cargo test -- --nocapture` shows it).
fn score(conversations: &[Conversation]) -> (usize, usize, usize) {
    let (mut matched, mut n_found, mut n_expected) = (0, 0, 0);
    for conversation in conversations {
        let candidates = settle_within_job(extract_facts(&conversation.turns, &GenerationConfig::default()));
        let found: Vec<String> = candidates
            .into_iter()
            .filter(|candidate| candidate.kind == CandidateKind::Assert)
            .map(|candidate| candidate.fact)
            .collect();
        let mut unmatched: Vec<&String> = found.iter().collect();
        for expected in &conversation.expected {
            match unmatched.iter().position(|found| same_fact(found, expected)) {
                Some(idx) => {
                    unmatched.remove(idx);
                    matched += 1;
                }
                None => println!("{}: missed {expected:?}", conversation.name),
            }
        }
        for extra in unmatched {
            println!("{}: not expected {extra:?}", conversation.name);
        }
        n_found += found.len();
        n_expected += conversation.expected.len();
    }
    (matched, n_found, n_expected)
}

#[test]
fn the_rules_keep_the_facts_of_the_labelled_conversations() {
    let conversations = conversations(include_str!("test_data/labelled_conversations.txt"));
    assert_eq!(conversations.len(), 7);
    let (matched, n_found, n_expected) = score(&conversations);
    let precision = matched as f64 / n_found.max(1) as f64;
    let recall = matched as f64 / n_expected as f64;
    println!("rules: {matched} of {n_found} found expected, {matched} of {n_expected} expected found");
    println!("rules: precision {precision:.3}, recall {recall:.3}");
    assert!(precision >= PRECISION_FLOOR, "precision {precision:.3} fell below {PRECISION_FLOOR}");
    assert!(recall >= RECALL_FLOOR, "recall {recall:.3} fell below {RECALL_FLOOR}");
}

const PRECISION_FLOOR: f64 = 1.0;
const RECALL_FLOOR: f64 = 1.0;

#[test]
fn facts_match_when_their_content_words_mostly_agree() {
    assert!(same_fact("User's name is Tom", "User's name is Tom."));
    assert!(same_fact("User works as a software engineer at a bank in Leeds", "User is a software engineer in Leeds"));
    assert!(!same_fact("User lives in Leeds", "User works in Leeds as a nurse at the hospital"));
    assert!(!same_fact("User likes tea", "User hates coffee"));
}
