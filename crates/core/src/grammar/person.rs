//! Rewriting a first-person clause in the third person about "User", conjugating the verb after
//! each "I".

use super::lexicon::UNCHANGED_AFTER_I;
use super::words::{bare, is_adverb, is_past};

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

pub(super) fn is_first_person_subject(lower: &str) -> bool {
    first_person_contraction(lower).is_some()
}

/// Replaces the first person with "User", conjugating the verb that follows each "I"; every other
/// word stays as written.
pub(super) fn third_person(tokens: &[String]) -> Vec<String> {
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

/// Splits a token into leading punctuation, the word, and trailing punctuation: `("(", "me", "),")`.
fn split_affixes(token: &str) -> (&str, &str, &str) {
    let start = token.find(char::is_alphanumeric).unwrap_or(token.len());
    let end = token
        .rfind(char::is_alphanumeric)
        .map_or(start, |idx| idx + token[idx..].chars().next().map_or(1, char::len_utf8));
    (&token[..start], &token[start..end.max(start)], &token[end.max(start)..])
}
