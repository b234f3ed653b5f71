//! The word lists of the grammar, by kind. Matching is on lowercase words (`words::bare`);
//! phrases are words separated by single spaces, longer phrases before their prefixes where the
//! first match wins.

mod discourse;
mod filler;
mod function_words;
mod predicates;
mod verbs;

pub(super) use discourse::*;
pub(super) use filler::*;
pub(super) use function_words::*;
pub(super) use predicates::*;
pub(super) use verbs::*;
