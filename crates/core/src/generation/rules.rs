//! The rules extractor: offline, deterministic extraction of what the user says about themself,
//! read with the English grammar of `crate::grammar` from the user's turns only.
//!
//! Topics: when the request names topics outside the managed set, a fact whose content words
//! (lowercased, plural "s" dropped, function words ignored) share a word with a custom topic's name
//! or description is filed under the first such topic, in request order. Otherwise the fact keeps
//! its managed topic, and is dropped when that topic was not requested, unless the user asked in
//! so many words ("remember that ...", "forget ..."): those are always kept.

use std::collections::HashMap;

use crate::Role;
use crate::grammar::{
    EXPLICIT_INSTRUCTIONS, Finding, FindingKind, content_words, findings_in, normalise, resolve_dates,
};

use super::{
    Candidate, CandidateKind, ExtractError, Extractor, GenerationConfig, LlmUsage, MANAGED_TOPICS, Neighbour,
    SummaryTurn, Turn, Verdict,
};

/// Extracts facts with the fixed rules of the grammar; needs no model and never judges.
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

    async fn summarise(
        &self,
        turns: &[SummaryTurn],
        max_tokens: u32,
        tokenizer: crate::Tokenizer,
        _usage: &mut LlmUsage,
    ) -> Result<String, ExtractError> {
        Ok(super::summary::offline_summary(turns, max_tokens, tokenizer))
    }

    fn summary_method(&self) -> crate::SummaryMethod {
        crate::SummaryMethod::Offline
    }
}

/// The facts the user's turns state, in the order they were said, one candidate per distinct fact.
pub fn extract_facts(turns: &[Turn], config: &GenerationConfig) -> Vec<Candidate> {
    let topics = TopicChooser::new(config);
    let mut candidates: Vec<Candidate> = Vec::new();
    // Keyed by (is forget, normalised fact): a fact said twice is one candidate citing both turns.
    let mut candidate_idx_by_key: HashMap<(bool, String), usize> = HashMap::new();
    for turn in turns.iter().filter(|turn| turn.role == Role::User) {
        for mut finding in findings_in(&turn.content) {
            let Some(topic) = topics.choose(&finding) else { continue };
            // "Yesterday" is a date only as of when it was said.
            if finding.kind == FindingKind::Assert {
                finding.fact = resolve_dates(&finding.fact, turn.said_at);
            }
            let key = (finding.kind == FindingKind::Forget, normalise(&finding.fact));
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
                kind: candidate_kind(finding.kind),
            });
        }
    }
    candidates
}

fn candidate_kind(kind: FindingKind) -> CandidateKind {
    match kind {
        FindingKind::Assert => CandidateKind::Assert,
        FindingKind::Forget => CandidateKind::Forget,
    }
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
        if let Some(managed) = self.managed.iter().find(|name| *name == finding.topic) {
            return Some(managed.clone());
        }
        // A topic list filters what is remembered unasked: a request to forget, or to remember
        // something in so many words, is the user's instruction and is always kept.
        let is_instruction = finding.kind == FindingKind::Forget || finding.topic == EXPLICIT_INSTRUCTIONS;
        is_instruction.then(|| EXPLICIT_INSTRUCTIONS.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use uuid::Uuid;

    use super::*;
    use crate::generation::TopicSpec;
    use crate::grammar::{EXPLICIT_INSTRUCTIONS, PREFERENCES, attribute_of};

    fn turn(role: Role, content: &str) -> Turn {
        let said_at = "2026-12-06T10:00:00Z".parse().expect("a time");
        Turn { event_id: Uuid::new_v4(), role, author: "someone".to_owned(), content: content.to_owned(), said_at }
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

    fn extract_with(content: &str, config: &GenerationConfig) -> Vec<(String, String)> {
        extract_facts(&[turn(Role::User, content)], config)
            .into_iter()
            .map(|candidate| (candidate.fact, candidate.topic))
            .collect()
    }

    #[test]
    fn relative_dates_count_from_when_the_turn_was_said() {
        // `turn` says everything on Sunday 6 December 2026.
        let facts = |content: &str| -> Vec<String> {
            extract_with(content, &GenerationConfig::default()).into_iter().map(|(fact, _)| fact).collect()
        };
        assert_eq!(facts("I'm flying to Tokyo next month."), ["User is flying to Tokyo in January 2027"]);
        assert_eq!(facts("My sister got married last year."), ["User's sister got married in 2025"]);
        let mut said_later = turn(Role::User, "I'm flying to Tokyo next month.");
        said_later.said_at = "2027-03-01T08:00:00Z".parse().unwrap();
        let candidates = extract_facts(&[said_later], &GenerationConfig::default());
        assert_eq!(candidates[0].fact, "User is flying to Tokyo in April 2027");
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
    fn emits_only_requested_topics_and_every_instruction() {
        let config = config_with(&[(PREFERENCES, None)]);
        assert_eq!(
            extract_with(
                "I live in Paris. I love jazz. Forget my address. Remember that my dentist appointment is on Friday.",
                &config
            ),
            vec![
                ("User loves jazz".to_owned(), PREFERENCES.to_owned()),
                ("User's address".to_owned(), EXPLICIT_INSTRUCTIONS.to_owned()),
                ("User's dentist appointment is on Friday".to_owned(), EXPLICIT_INSTRUCTIONS.to_owned()),
            ]
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
}
