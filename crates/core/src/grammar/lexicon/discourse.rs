//! Words that shape sentences and requests: titles and abbreviations a dot does not end,
//! conjunctions that start clauses, lead-ins and sign-offs around a statement, and the phrases of
//! requests to remember or forget.

/// Never end a sentence: "Dr. Smith".
pub(in crate::grammar) const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "e.g", "i.e", "approx", "mt", "ft", "sgt", "capt", "lt",
    "rev", "vol", "cf", "al", "ave", "blvd", "dept",
];

/// End a sentence only when a capital follows: "6 a.m. every day" but "I work at Acme Inc. It".
pub(in crate::grammar) const ABBREVIATIONS: &[&str] = &[
    "a.m", "p.m", "u.s", "u.k", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec",
];

/// After a comma, these start a clause that qualifies the main one: "I'm vegan, so ...".
pub(in crate::grammar) const SUBORDINATORS: &[&str] =
    &["so", "but", "which", "because", "although", "though", "since", "while", "whereas", "unless", "if", "as"];

pub(in crate::grammar) const CLAUSE_CONJUNCTIONS: &[&str] =
    &["and", "but", "so", "plus", "although", "though", "because", "cause", "whereas", "while"];

/// Greetings and discourse markers before the statement proper; longer phrases first.
pub(in crate::grammar) const LEAD_INS: &[&str] = &[
    "just so you know",
    "for your information",
    "for the record",
    "by the way",
    "guess what",
    "you know what",
    "long story short",
    "oh yeah",
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
    "unfortunately",
    "fortunately",
    "luckily",
    "sadly",
    "thankfully",
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

pub(in crate::grammar) const TRAILERS: &[&str] =
    &["thank you", "by the way", "thanks", "thx", "please", "lol", "haha", "btw", "anyway"];

/// Ways of asking the assistant to do something, before "remember" or "forget".
pub(in crate::grammar) const REQUEST_PREFIXES: &[&str] = &[
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

pub(in crate::grammar) const REMEMBER_PHRASES: &[&str] = &[
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

pub(in crate::grammar) const FORGET_PHRASES: &[&str] =
    &["forget", "don't remember", "dont remember", "do not remember", "stop remembering", "no longer remember"];

/// After "remember": a reminder, a question or a pronoun, not a fact.
pub(in crate::grammar) const REMEMBER_VAGUE: &[&str] = &[
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
pub(in crate::grammar) const FORGET_VAGUE: &[&str] = &[
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

pub(in crate::grammar) const FORGET_VAGUE_PHRASES: &[&str] =
    &["i just said", "i typed", "my last", "my previous", "the thing", "that thing", "the last", "the previous"];
