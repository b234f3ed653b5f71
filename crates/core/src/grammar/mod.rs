//! The English grammar of facts about the user: what a message states, in the third person, and
//! what a stated fact sets. The rules extractor reads messages with it ([`findings_in`]); every
//! extractor's facts are compared with it in consolidation ([`normalise`], [`attribute_of`]).
//!
//! Reading a message: it is split into sentences (on `.`, `!`, `?`, `;` and line breaks, but not
//! inside decimals, addresses like `example.com` or after titles like `Dr.`) and sentences into
//! clauses ("I live in Paris and I work at Acme" is two) in [`sentences`]. A clause is kept
//! ([`clauses`]) when it is one of:
//!
//! - an explicit request to remember something ("remember that I'm vegan", "don't forget that my
//!   flight is on Friday"): an assertion filed under `EXPLICIT_INSTRUCTIONS`, confidence 0.95;
//! - an explicit request to forget something ("forget my address", "please forget that I live in
//!   Paris"): a [`FindingKind::Forget`] under `EXPLICIT_INSTRUCTIONS`, confidence 0.95;
//! - a first-person statement, filed by what it says ([`facts`]): likes, dislikes and favourites
//!   under `USER_PREFERENCES` (0.8-0.9); plans and wishes ("I'm planning to", "I will", "I want
//!   to") and one-off past events under `KEY_CONVERSATION_DETAILS` (0.7-0.75); everything else the
//!   user states about themself ("I live in", "I'm a nurse", "my name is") under
//!   `USER_PERSONAL_INFO` (0.8-0.9).
//!
//! The fact is the clause in the third person about "User" ("User lives in Paris", "User's name
//! is Sam", [`person`]); the rest of the clause stays verbatim. A few changes are restated as the
//! new state ([`changes`]): "I moved to Berlin" is "User lives in Berlin", "I don't drink coffee
//! anymore" is "User no longer drinks coffee", "I changed my email to x" is "User's email is x".
//! Facts read as a person would write them ([`phrasing`]): "I'm Maria" is "User's name is
//! Maria", "I'm 34" is "User is 34 years old", "green now, not blue" is "green", "a daughter
//! called Lena, she is 6" is "a daughter called Lena, who is 6 years old". A plan the user shares
//! ("we're planning a trip to Lisbon", "we'll fly on Monday") is read as the user's own; other
//! "we" statements are not.
//!
//! Skipped: questions, hedges and filler ("I think so", "I'm not sure", "thanks"), passing moods
//! ("I'm so tired"), sentences about the assistant ("I like your answer", "I want you to ..."),
//! clauses of fewer than two words after the subject ("I agree"), unless they report a change ("I
//! used to smoke"), and clauses with nothing after the verb but pronouns ("I love it").
//! "Remember to ..." is a reminder, not a fact, and is skipped too. Standing requests ("always
//! answer in French") are kept as preferences: "User wants the assistant to always answer in
//! French".
//!
//! [`attribute_of`] ([`attributes`]) names what a fact sets ("residence", "favourite colour",
//! "opinion:coffee"), so consolidation can let a changed statement replace the one it
//! contradicts. The word lists live in [`lexicon`], the word helpers in [`words`].
//!
//! `test_data/facts.txt` holds what the grammar finds in sample messages, one case per line or
//! block, run by one test.
//!
//! **Architecture Invariant:** the grammar knows nothing of jobs, requests or extractors: it
//! turns text into findings and facts into keys, and is a pure function of its input.

mod attributes;
mod changes;
mod clauses;
mod dates;
mod facts;
mod lexicon;
mod narration;
mod person;
mod phrasing;
mod sentences;
mod words;

#[cfg(test)]
mod tests;

pub use attributes::{attribute_of, attribute_value_of};
pub use dates::resolve_dates;
pub use words::{content_words, keywords, normalise};

use clauses::read_clause;
use sentences::{split_clauses, split_sentences};

// The managed topics a finding is filed under, by Memory Bank's names.

/// Who the user is: residence, work, family, age, name.
pub const PERSONAL_INFO: &str = "USER_PERSONAL_INFO";
/// Likes, dislikes, favourites, diet, how the assistant should behave.
pub const PREFERENCES: &str = "USER_PREFERENCES";
/// Plans, wishes and one-off past events.
pub const CONVERSATION_DETAILS: &str = "KEY_CONVERSATION_DETAILS";
/// What the user asked in so many words to remember or forget.
pub const EXPLICIT_INSTRUCTIONS: &str = "EXPLICIT_INSTRUCTIONS";

/// A fact found in one clause, before its topic is settled against the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub fact: String,
    pub kind: FindingKind,
    /// The managed topic the fact belongs to.
    pub topic: &'static str,
    pub confidence: f64,
}

/// Whether a clause states a fact or asks to forget one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// A fact to remember: a statement, or a request to remember it.
    Assert,
    /// A request to forget what matches the fact.
    Forget,
}

/// The facts a message states, in the order they are said.
pub fn findings_in(content: &str) -> Vec<Finding> {
    let content = content.replace(['\u{2019}', '\u{2018}', '\u{02BC}'], "'");
    let mut findings = Vec::new();
    for sentence in split_sentences(&content) {
        for clause in split_clauses(&sentence.text) {
            findings.extend(read_clause(clause, sentence.is_question));
        }
    }
    findings
}
