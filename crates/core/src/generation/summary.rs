//! The offline summariser: a compaction summary without a model, deterministic, within a token
//! budget. Every line names the events it comes from as `[#seq]`, so a reader (or a model) can
//! fetch the event itself; nothing is paraphrased, only selected.
//!
//! What it keeps, in this order, each while the budget lasts:
//! 1. **Facts the user stated**, as the rules extractor reads them (name, home, job,
//!    preferences, instructions, "remember ..."): the things later turns most often depend on.
//! 2. **The last user request**, verbatim (shortened): the thread of the current task.
//! 3. **Open questions**: user questions no assistant turn answered afterwards in the range.
//! 4. **Tool results by reference**: the tool and the size of its output, never the output,
//!    which is usually long and stale; the event stays one fetch away.
//! 5. **Key points**: from every other turn, its most informative sentence (names, numbers,
//!    dates and rare words weigh most), best first until the budget is spent, then listed in
//!    conversation order.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use super::{GenerationConfig, SummaryTurn};
use crate::{Role, Tokenizer};

/// The longest quotation of one turn, in characters.
const MAX_QUOTE_CHARS: usize = 240;

/// Words too common to make a sentence informative.
const STOPWORDS: &[&str] = &[
    "about",
    "after",
    "again",
    "also",
    "because",
    "been",
    "before",
    "being",
    "could",
    "doing",
    "does",
    "going",
    "have",
    "just",
    "know",
    "like",
    "really",
    "should",
    "something",
    "that",
    "their",
    "there",
    "these",
    "they",
    "thing",
    "things",
    "think",
    "this",
    "those",
    "very",
    "want",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "with",
    "would",
    "your",
    "yours",
    "yeah",
    "thanks",
    "thank",
    "great",
    "good",
    "sounds",
    "awesome",
    "totally",
];

/// Writes the offline summary of `turns` in at most `max_tokens` tokens.
pub fn offline_summary(turns: &[SummaryTurn], max_tokens: u32, tokenizer: Tokenizer) -> String {
    let (Some(first), Some(last)) = (turns.first(), turns.last()) else {
        return String::new();
    };
    let mut out = Budgeted::new(max_tokens, tokenizer);
    out.push(format!(
        "Summary of events #{}-#{} ({} turns, {} to {}):",
        first.seq,
        last.seq,
        turns.len(),
        first.turn.said_at.format("%Y-%m-%d %H:%M"),
        last.turn.said_at.format("%Y-%m-%d %H:%M"),
    ));
    let seq_of: HashMap<Uuid, i64> = turns.iter().map(|turn| (turn.turn.event_id, turn.seq)).collect();
    let mut quoted: BTreeSet<i64> = BTreeSet::new();

    let plain: Vec<_> = turns.iter().map(|turn| turn.turn.clone()).collect();
    let facts = super::rules::extract_facts(&plain, &GenerationConfig::default());
    let mut section = out.section("Facts the user stated:");
    for fact in facts {
        let seqs: Vec<i64> = fact.source_event_ids.iter().filter_map(|id| seq_of.get(id).copied()).collect();
        if section.push(&mut out, format!("- {}{}", fact.fact, refs(&seqs))) {
            quoted.extend(seqs);
        }
    }

    if let Some(request) = turns.iter().rev().find(|turn| turn.turn.role == Role::User)
        && out.push(format!("Last user request: \"{}\" [#{}]", quote(&request.turn.content), request.seq))
    {
        quoted.insert(request.seq);
    }

    let open: Vec<&SummaryTurn> = turns
        .iter()
        .enumerate()
        .filter(|(idx, turn)| {
            turn.turn.role == Role::User
                && turn.turn.content.trim_end().ends_with('?')
                && !turns[idx + 1..].iter().any(|later| later.turn.role == Role::Assistant)
        })
        .map(|(_, turn)| turn)
        .filter(|turn| !quoted.contains(&turn.seq))
        .collect();
    let mut section = out.section("Open questions:");
    for turn in open {
        if section.push(&mut out, format!("- \"{}\" [#{}]", quote(&turn.turn.content), turn.seq)) {
            quoted.insert(turn.seq);
        }
    }

    let mut section = out.section("Tool results (fetch the event for the output):");
    for turn in turns.iter().filter(|turn| turn.turn.role == Role::Tool) {
        let tokens = tokenizer.count(&turn.turn.content);
        if section.push(&mut out, format!("- [#{}] {}: {tokens} tokens", turn.seq, turn.turn.author)) {
            quoted.insert(turn.seq);
        }
    }

    let document_frequency = document_frequency(turns);
    let mut points: Vec<(f64, &SummaryTurn, String)> = turns
        .iter()
        .filter(|turn| !quoted.contains(&turn.seq) && turn.turn.role != Role::Tool)
        .filter_map(|turn| {
            let (score, sentence) = best_sentence(&turn.turn.content, &document_frequency, turns.len())?;
            Some((score, turn, sentence))
        })
        .collect();
    // Best first; ties by position, so the same input always gives the same summary.
    points.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.seq.cmp(&b.1.seq)));
    // Chosen best first, listed in conversation order.
    let header = "Key points:";
    let mut chosen: Vec<(i64, String)> = Vec::new();
    let mut header_cost = out.cost(header);
    for (_, turn, sentence) in points {
        let line = format!("- [#{}] {}: {}", turn.seq, turn.turn.author, quote(&sentence));
        if out.cost(&line) + header_cost <= out.left {
            out.left -= out.cost(&line) + header_cost;
            header_cost = 0;
            chosen.push((turn.seq, line));
        }
    }
    if !chosen.is_empty() {
        chosen.sort_by_key(|(seq, _)| *seq);
        out.lines.push(header.to_owned());
        out.lines.extend(chosen.into_iter().map(|(_, line)| line));
    }
    out.lines.join("\n")
}

/// A section of the summary: its heading goes in with its first line that fits, or never.
struct Section {
    heading: Option<&'static str>,
}

impl Section {
    fn push(&mut self, out: &mut Budgeted, line: String) -> bool {
        let heading_cost = self.heading.map_or(0, |heading| out.cost(heading));
        if out.cost(&line) + heading_cost > out.left {
            return false;
        }
        if let Some(heading) = self.heading.take() {
            out.push(heading.to_owned());
        }
        out.push(line)
    }
}

/// Lines that stay within a token budget (each counted with its newline).
struct Budgeted {
    lines: Vec<String>,
    left: i64,
    tokenizer: Tokenizer,
}

impl Budgeted {
    fn new(max_tokens: u32, tokenizer: Tokenizer) -> Budgeted {
        Budgeted { lines: Vec::new(), left: i64::from(max_tokens), tokenizer }
    }

    fn cost(&self, line: &str) -> i64 {
        i64::from(self.tokenizer.count(line)) + 1
    }

    fn section(&self, heading: &'static str) -> Section {
        Section { heading: Some(heading) }
    }

    /// Adds `line` if it fits; says whether it did.
    fn push(&mut self, line: String) -> bool {
        if self.cost(&line) > self.left {
            return false;
        }
        self.left -= self.cost(&line);
        self.lines.push(line);
        true
    }
}

fn refs(seqs: &[i64]) -> String {
    seqs.iter().map(|seq| format!(" [#{seq}]")).collect()
}

/// One line of text, at most `MAX_QUOTE_CHARS` characters.
fn quote(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX_QUOTE_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(MAX_QUOTE_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|word| !word.is_empty())
}

/// In how many turns each lowercased word occurs.
fn document_frequency(turns: &[SummaryTurn]) -> HashMap<String, usize> {
    let mut frequency = HashMap::new();
    for turn in turns {
        let distinct: BTreeSet<String> = words(&turn.turn.content).map(str::to_lowercase).collect();
        for word in distinct {
            *frequency.entry(word).or_insert(0) += 1;
        }
    }
    frequency
}

/// The most informative sentence of a turn and its score: names (capitalised words not opening
/// the sentence) and numbers count double, other content words by their rarity in the range.
fn best_sentence(text: &str, frequency: &HashMap<String, usize>, n_turns: usize) -> Option<(f64, String)> {
    let mut best: Option<(f64, String)> = None;
    for sentence in text.split_inclusive(['.', '!', '?', '\n']) {
        let sentence = sentence.trim();
        let mut score = 0.0;
        let mut n_words = 0usize;
        for (idx, word) in words(sentence).enumerate() {
            n_words += 1;
            let lower = word.to_lowercase();
            if lower.chars().count() < 4 && !word.chars().any(|c| c.is_ascii_digit()) {
                continue;
            }
            if STOPWORDS.contains(&lower.as_str()) {
                continue;
            }
            let rarity = (n_turns as f64 / *frequency.get(&lower).unwrap_or(&1) as f64).ln().max(0.0) + 1.0;
            let name = idx > 0 && word.chars().next().is_some_and(char::is_uppercase);
            let number = word.chars().any(|c| c.is_ascii_digit());
            score += if name || number { 2.0 * rarity } else { rarity };
        }
        if n_words < 3 || score <= 0.0 {
            continue;
        }
        // Longer sentences say more but cost more: a square root rewards neither extreme.
        let score = score / (n_words as f64).sqrt();
        if best.as_ref().is_none_or(|(top, _)| score > *top) {
            best = Some((score, sentence.to_owned()));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::generation::Turn;

    fn turn(seq: i64, role: Role, author: &str, content: &str) -> SummaryTurn {
        SummaryTurn {
            seq,
            turn: Turn {
                event_id: Uuid::from_u128(seq as u128),
                role,
                author: author.to_owned(),
                content: content.into(),
                said_at: Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap() + chrono::Duration::minutes(seq),
            },
        }
    }

    fn conversation() -> Vec<SummaryTurn> {
        vec![
            turn(1, Role::User, "user", "Hi! My name is Maria and I live in Hamburg."),
            turn(2, Role::Assistant, "agent", "Nice to meet you, Maria. How can I help?"),
            turn(3, Role::User, "user", "I'm vegetarian, so please never suggest steak houses."),
            turn(
                4,
                Role::Tool,
                "search_flights",
                "{\"results\": [\"LH 1234 HAM-LIS 08:05\", \"TP 571 HAM-LIS 12:40\"]}",
            ),
            turn(
                5,
                Role::Assistant,
                "agent",
                "There are two direct flights on 14 October: LH 1234 at 08:05 and TP 571 at 12:40.",
            ),
            turn(6, Role::User, "user", "Book the TP 571 one. Does it include a checked bag?"),
        ]
    }

    #[test]
    fn keeps_facts_the_last_request_open_questions_and_tools_by_reference() {
        let summary = offline_summary(&conversation(), 500, Tokenizer::O200kBase);
        assert!(summary.starts_with("Summary of events #1-#6 (6 turns, 2026-11-02 09:01 to 2026-11-02 09:06)"));
        assert!(summary.contains("Facts the user stated:"), "{summary}");
        assert!(summary.contains("Hamburg") && summary.contains("[#1]"), "{summary}");
        assert!(summary.contains("Last user request: \"Book the TP 571 one. Does it include a checked bag?\" [#6]"));
        assert!(summary.contains("- [#4] search_flights:") && !summary.contains("HAM-LIS 08:05"), "{summary}");
        assert!(summary.contains("[#5] agent: There are two direct flights on 14 October"), "{summary}");
    }

    #[test]
    fn stays_within_its_budget_and_is_deterministic() {
        let turns = conversation();
        for budget in [20, 40, 80, 160] {
            let summary = offline_summary(&turns, budget, Tokenizer::O200kBase);
            assert!(Tokenizer::O200kBase.count(&summary) <= budget, "{budget}: {summary}");
            assert_eq!(summary, offline_summary(&turns, budget, Tokenizer::O200kBase));
        }
        assert_eq!(offline_summary(&[], 100, Tokenizer::O200kBase), "");
    }

    #[test]
    fn a_question_answered_later_is_not_open() {
        let turns = vec![
            turn(1, Role::User, "user", "Which terminal does TP 571 leave from?"),
            turn(2, Role::Assistant, "agent", "Terminal 1."),
            turn(3, Role::User, "user", "Thanks. Is there a lounge?"),
        ];
        let summary = offline_summary(&turns, 300, Tokenizer::O200kBase);
        assert!(!summary.contains("Open questions:\n- \"Which terminal"), "{summary}");
    }
}
