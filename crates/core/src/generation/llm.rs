//! The extractor backed by a language model: any [`ChatModel`] reads the conversation and
//! answers in JSON, which is validated strictly before anything reaches consolidation.
//!
//! A reply that fails validation is sent back to the model with the exact error, a few times,
//! before the attempt fails as transient; a model that finds nothing answers with an empty list,
//! which is never confused with a failure.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::{
    Candidate, CandidateKind, ChatMessage, ChatModel, ChatRequest, ExtractError, Extractor, GenerationConfig, LlmUsage,
    Neighbour, SummaryTurn, TopicSpec, Turn, Verdict,
};
use crate::Role;

/// The longest fact accepted from a model, in characters.
use crate::limits::MAX_FACT_CHARS;

/// Extracts facts and judges near-duplicates with a chat model.
pub struct LlmExtractor {
    model: Arc<dyn ChatModel>,
    /// Replies sent back for correction before a call fails.
    max_repairs: u32,
    /// Turns shown to the model in one call; longer conversations take several calls.
    turns_per_call: usize,
}

impl LlmExtractor {
    pub const DEFAULT_MAX_REPAIRS: u32 = 2;
    pub const DEFAULT_TURNS_PER_CALL: usize = 60;

    pub fn new(model: Arc<dyn ChatModel>) -> LlmExtractor {
        LlmExtractor::with_limits(model, LlmExtractor::DEFAULT_MAX_REPAIRS, LlmExtractor::DEFAULT_TURNS_PER_CALL)
    }

    /// `turns_per_call` below 1 is taken as 1.
    pub fn with_limits(model: Arc<dyn ChatModel>, max_repairs: u32, turns_per_call: usize) -> LlmExtractor {
        LlmExtractor { model, max_repairs, turns_per_call: turns_per_call.max(1) }
    }

    /// Sends `prompt` and validates the reply, sending it back with the validation error until it
    /// passes or the repairs run out.
    async fn ask<T>(
        &self,
        system: String,
        prompt: String,
        validate: impl Fn(&str) -> Result<T, String>,
        usage: &mut LlmUsage,
    ) -> Result<T, ExtractError> {
        let mut messages = vec![ChatMessage { role: Role::User, content: prompt }];
        let mut n_repairs = 0;
        loop {
            let request = ChatRequest { system: system.clone(), messages: messages.clone(), json: true };
            let reply = self.model.chat(request).await?;
            usage.calls += 1;
            usage.input_tokens += reply.input_tokens;
            usage.output_tokens += reply.output_tokens;
            let reason = match validate(&reply.text) {
                Ok(value) => return Ok(value),
                Err(reason) => reason,
            };
            if n_repairs >= self.max_repairs {
                return Err(ExtractError::Transient(format!(
                    "model output invalid after {n_repairs} repairs: {reason}"
                )));
            }
            n_repairs += 1;
            usage.repairs += 1;
            tracing::debug!(n_repairs, %reason, "model reply failed validation; asking for a repair");
            messages.push(ChatMessage { role: Role::Assistant, content: reply.text });
            messages.push(ChatMessage { role: Role::User, content: repair_prompt(&reason) });
        }
    }
}

#[async_trait::async_trait]
impl Extractor for LlmExtractor {
    async fn extract(
        &self,
        turns: &[Turn],
        config: &GenerationConfig,
        usage: &mut LlmUsage,
    ) -> Result<Vec<Candidate>, ExtractError> {
        let topics = config.effective_topics();
        let system = extraction_system_prompt(&topics, config);
        let topic_names: Vec<&str> = topics.iter().map(|topic| topic.name.as_str()).collect();
        let mut candidates = Vec::new();
        for window in turns.chunks(self.turns_per_call) {
            let facts = self
                .ask(
                    system.clone(),
                    extraction_prompt(window),
                    |text| validate_facts(text, &topic_names, window.len()),
                    usage,
                )
                .await?;
            candidates.extend(facts.into_iter().map(|fact| Candidate {
                fact: fact.fact,
                topic: fact.topic,
                confidence: fact.confidence,
                source_event_ids: fact.source_turns.iter().map(|&turn_idx| window[turn_idx].event_id).collect(),
                kind: match fact.action {
                    FactAction::Remember => CandidateKind::Assert,
                    FactAction::Forget => CandidateKind::Forget,
                },
            }));
        }
        Ok(candidates)
    }

    async fn judge(
        &self,
        candidate: &Candidate,
        neighbours: &[Neighbour],
        usage: &mut LlmUsage,
    ) -> Result<Option<Verdict>, ExtractError> {
        // Nothing to compare with: a new fact is added, a request to forget finds nothing.
        if neighbours.is_empty() {
            return Ok(Some(match candidate.kind {
                CandidateKind::Assert => Verdict::Add,
                CandidateKind::Forget => Verdict::Noop,
            }));
        }
        let decision = self
            .ask(
                JUDGE_SYSTEM_PROMPT.to_owned(),
                judge_prompt(candidate, neighbours),
                |text| validate_decision(text, neighbours.len()),
                usage,
            )
            .await?;
        Ok(Some(match decision {
            Decision::Add => Verdict::Add,
            Decision::Update { memory_idx, fact } => Verdict::Update { memory_id: neighbours[memory_idx].id, fact },
            Decision::Delete { memory_idx } => Verdict::Delete { memory_id: neighbours[memory_idx].id },
            Decision::Noop => Verdict::Noop,
        }))
    }

    async fn summarise(
        &self,
        turns: &[SummaryTurn],
        max_tokens: u32,
        tokenizer: crate::Tokenizer,
        usage: &mut LlmUsage,
    ) -> Result<String, ExtractError> {
        let seqs: HashSet<i64> = turns.iter().map(|turn| turn.seq).collect();
        self.ask(
            summary_system_prompt(max_tokens),
            summary_prompt(turns),
            |text| validate_summary(text, max_tokens, tokenizer, &seqs),
            usage,
        )
        .await
    }

    fn summary_method(&self) -> crate::SummaryMethod {
        crate::SummaryMethod::Llm
    }
}

fn summary_system_prompt(max_tokens: u32) -> String {
    format!(
        "You compact the history of a conversation between a user and an AI agent so the agent can go on \
         without the full transcript. Write a summary of the turns given, at most {max_tokens} tokens, as short \
         lines. Keep: facts about the user and their preferences and instructions; decisions taken; the user's \
         current request and any question not yet answered; names, numbers, dates and identifiers exactly as \
         written; tool results only as what they established. Drop pleasantries and repetition. End every line \
         with the numbers of the turns it comes from, as [#n].\n\n\
         Reply with a single JSON object and nothing else: {{\"summary\": \"<the summary, lines separated by \\n>\"}}"
    )
}

fn summary_prompt(turns: &[SummaryTurn]) -> String {
    let mut prompt = String::from("The turns, each numbered [#n]:\n");
    for turn in turns {
        let speaker = turn.turn.role.as_str();
        let content = &turn.turn.content;
        if turn.turn.author.is_empty() || turn.turn.author == speaker {
            prompt.push_str(&format!("\n[#{}] {speaker}: {content}", turn.seq));
        } else {
            prompt.push_str(&format!("\n[#{}] {speaker} ({}): {content}", turn.seq, turn.turn.author));
        }
    }
    prompt.push_str("\n\nReply with the JSON object of the summary.");
    prompt
}

#[derive(Deserialize)]
struct SummaryReply {
    summary: String,
}

/// A summary must be text within its budget (a fifth over is tolerated: models count loosely)
/// and cite only turns it was given.
fn validate_summary(
    text: &str,
    max_tokens: u32,
    tokenizer: crate::Tokenizer,
    seqs: &HashSet<i64>,
) -> Result<String, String> {
    let reply: SummaryReply = serde_json::from_str(strip_code_fence(text))
        .map_err(|err| format!("the reply is not valid JSON of the schema: {err}"))?;
    let summary = reply.summary.trim().to_owned();
    if summary.is_empty() {
        return Err("the summary is empty".to_owned());
    }
    let n_tokens = tokenizer.count(&summary);
    if u64::from(n_tokens) > u64::from(max_tokens) * 6 / 5 {
        return Err(format!("the summary takes {n_tokens} tokens; the limit is {max_tokens}"));
    }
    for cited in summary.split("[#").skip(1) {
        let digits: String = cited.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(seq) = digits.parse::<i64>()
            && !seqs.contains(&seq)
        {
            return Err(format!("the summary cites [#{seq}], which is not one of the turns given"));
        }
    }
    Ok(summary)
}

/// What the topics of Memory Bank mean, for topics configured without a description.
fn managed_topic_description(name: &str) -> Option<&'static str> {
    Some(match name {
        "USER_PERSONAL_INFO" => {
            "Significant personal information about the user: name, relationships, work, places, important dates."
        }
        "USER_PREFERENCES" => "The user's stated or implied likes, dislikes and preferences.",
        "KEY_CONVERSATION_DETAILS" => "Important milestones or conclusions within the dialogue.",
        "EXPLICIT_INSTRUCTIONS" => "Things the user explicitly asks to remember or to forget.",
        _ => return None,
    })
}

fn extraction_system_prompt(topics: &[TopicSpec], config: &GenerationConfig) -> String {
    let topic_lines: Vec<String> = topics
        .iter()
        .map(|topic| {
            let description = topic
                .description
                .as_deref()
                .or_else(|| managed_topic_description(&topic.name))
                .unwrap_or("(no description)");
            format!("- {}: {description}", topic.name)
        })
        .collect();
    let topic_names: Vec<&str> = topics.iter().map(|topic| topic.name.as_str()).collect();
    let schema = json!({
        "type": "object",
        "required": ["facts"],
        "properties": {
            "facts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["fact", "topic", "confidence", "source_turns", "action"],
                    "properties": {
                        "fact": {"type": "string", "minLength": 1, "maxLength": MAX_FACT_CHARS},
                        "topic": {"type": "string", "enum": topic_names},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                        "source_turns": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
                        "action": {"type": "string", "enum": ["remember", "forget"]},
                    },
                },
            },
        },
    });
    let mut prompt = format!(
        "You extract durable facts about the user from a conversation, for a long-term memory that \
         later conversations will read.\n\
         \n\
         Rules:\n\
         - Each fact is one self-contained statement about the user in the third person, starting \
         with \"User\" (for example \"User's favourite colour is blue\", \"User is allergic to peanuts\").\n\
         - Keep only what will still matter in future conversations; skip small talk, one-off requests \
         and what the assistant said unless the user confirmed it.\n\
         - File each fact under exactly one of the topics below, by its name.\n\
         - confidence: from 0 to 1, how sure you are that the user stated or clearly implied the fact.\n\
         - source_turns: the numbers of the conversation turns that support the fact.\n\
         - Each turn shows the day it was said: write a relative date in a fact as the date it \
         means from that day (\"yesterday\" said on 2026-12-06 is \"on 5 December 2026\", \"last month\" \
         is \"in November 2026\").\n\
         - action: \"remember\" for a fact to keep; \"forget\" when the user asks to forget something or \
         no longer wants it remembered (then the fact says what to forget, e.g. \"User's home address\").\n\
         - If nothing is worth remembering, reply with an empty list: {{\"facts\": []}}.\n\
         \n\
         Topics:\n{}\n\
         \n\
         Reply with a single JSON object matching this JSON Schema and nothing else:\n{}",
        topic_lines.join("\n"),
        serde_json::to_string_pretty(&schema).unwrap_or_default(),
    );
    if !config.examples.is_empty() {
        prompt.push_str(
            "\n\nExamples of conversations and the facts they yield (the examples show only fact and \
             topic; your reply must carry every field of the schema):",
        );
        for (example_idx, example) in config.examples.iter().enumerate() {
            prompt.push_str(&format!("\n\nExample {}:\nConversation:", example_idx + 1));
            for (turn_idx, turn) in example.conversation.iter().enumerate() {
                prompt.push_str(&format!("\n[{turn_idx}] {}: {}", turn.role.as_str(), turn.content));
            }
            prompt.push_str("\nFacts:");
            if example.facts.is_empty() {
                prompt.push_str(" none");
            }
            for fact in &example.facts {
                prompt.push_str(&format!("\n{}", json!({"fact": fact.fact, "topic": fact.topic})));
            }
        }
    }
    prompt
}

fn extraction_prompt(window: &[Turn]) -> String {
    let mut prompt = format!("The conversation, turns numbered 0 to {}:\n", window.len().saturating_sub(1));
    for (turn_idx, turn) in window.iter().enumerate() {
        let speaker = turn.role.as_str();
        // The author adds something only when it is more than the role (a named agent or user).
        let day = turn.said_at.format("%Y-%m-%d");
        if turn.author.is_empty() || turn.author == speaker {
            prompt.push_str(&format!("\n[{turn_idx}] {day} {speaker}: {}", turn.content));
        } else {
            prompt.push_str(&format!("\n[{turn_idx}] {day} {speaker} ({}): {}", turn.author, turn.content));
        }
    }
    prompt.push_str("\n\nReply with the JSON object of facts.");
    prompt
}

fn repair_prompt(reason: &str) -> String {
    format!(
        "Your reply was rejected: {reason}\nReply again with only the corrected JSON object, following \
         the schema and rules above."
    )
}

const JUDGE_SYSTEM_PROMPT: &str = "You maintain a long-term memory of facts about a user. A new fact \
    was just learned and resembles facts already stored. Decide what to do with it:\n\
    - ADD: it is new information, distinct from every stored fact.\n\
    - UPDATE: it refines, extends or corrects one stored fact; give that memory's number and the merged \
    fact, one third-person statement starting with \"User\" that keeps what is still true of both.\n\
    - DELETE: it contradicts or retracts one stored fact, which should be removed (also the answer when \
    the user asked to forget what that memory says); give that memory's number.\n\
    - NOOP: a stored fact already says it; nothing changes.\n\
    \n\
    Reply with a single JSON object and nothing else:\n\
    {\"decision\": \"ADD\" | \"UPDATE\" | \"DELETE\" | \"NOOP\", \"memory\": <number of the stored fact, \
    or null>, \"fact\": <the merged fact for UPDATE, or null>}";

fn judge_prompt(candidate: &Candidate, neighbours: &[Neighbour]) -> String {
    let intent = match candidate.kind {
        CandidateKind::Assert => "New fact",
        CandidateKind::Forget => "The user asked to forget",
    };
    let mut prompt = format!("{intent} (topic {}): {}\n\nStored facts:", candidate.topic, candidate.fact);
    for (memory_idx, neighbour) in neighbours.iter().enumerate() {
        prompt.push_str(&format!("\n[{memory_idx}] {} (similarity {:.2})", neighbour.fact, neighbour.similarity));
    }
    prompt.push_str("\n\nReply with the JSON decision.");
    prompt
}

/// Models often wrap JSON in a markdown fence even when told not to.
fn strip_code_fence(text: &str) -> &str {
    let text = text.trim();
    let Some(opened) = text.strip_prefix("```") else {
        return text;
    };
    // The opening line may name a language ("```json").
    let body = opened.split_once('\n').map_or("", |(_, rest)| rest);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

#[derive(Deserialize)]
struct FactsReply {
    facts: Vec<FactReply>,
}

#[derive(Debug, Deserialize)]
struct FactReply {
    fact: String,
    topic: String,
    confidence: f64,
    source_turns: Vec<usize>,
    action: FactAction,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FactAction {
    Remember,
    Forget,
}

/// Parses a reply of facts and checks every rule the schema cannot express; the error names the
/// offending fact so the model can fix it.
fn validate_facts(text: &str, topic_names: &[&str], n_turns: usize) -> Result<Vec<FactReply>, String> {
    let reply: FactsReply = serde_json::from_str(strip_code_fence(text))
        .map_err(|err| format!("the reply is not valid JSON of the schema: {err}"))?;
    let mut facts = Vec::with_capacity(reply.facts.len());
    for (fact_idx, mut fact) in reply.facts.into_iter().enumerate() {
        fact.fact = fact.fact.trim().to_owned();
        if fact.fact.is_empty() {
            return Err(format!("facts[{fact_idx}].fact is empty"));
        }
        let n_chars = fact.fact.chars().count();
        if n_chars > MAX_FACT_CHARS {
            return Err(format!(
                "facts[{fact_idx}].fact has {n_chars} characters; at most {MAX_FACT_CHARS} are allowed"
            ));
        }
        if !topic_names.contains(&fact.topic.as_str()) {
            return Err(format!(
                "facts[{fact_idx}].topic {:?} is not one of the topics: {}",
                fact.topic,
                topic_names.join(", ")
            ));
        }
        if !(0.0..=1.0).contains(&fact.confidence) {
            return Err(format!("facts[{fact_idx}].confidence {} is not between 0 and 1", fact.confidence));
        }
        if fact.source_turns.is_empty() {
            return Err(format!("facts[{fact_idx}].source_turns is empty; name at least one turn"));
        }
        if let Some(turn_idx) = fact.source_turns.iter().find(|&&turn_idx| turn_idx >= n_turns) {
            return Err(format!(
                "facts[{fact_idx}].source_turns names turn {turn_idx}, but the turns are numbered 0 to {}",
                n_turns.saturating_sub(1)
            ));
        }
        let mut seen = HashSet::new();
        fact.source_turns.retain(|turn_idx| seen.insert(*turn_idx));
        facts.push(fact);
    }
    Ok(facts)
}

#[derive(Deserialize)]
struct DecisionReply {
    decision: DecisionKind,
    memory: Option<usize>,
    fact: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum DecisionKind {
    Add,
    Update,
    Delete,
    Noop,
}

#[derive(Debug, PartialEq)]
enum Decision {
    Add,
    Update { memory_idx: usize, fact: String },
    Delete { memory_idx: usize },
    Noop,
}

fn validate_decision(text: &str, n_neighbours: usize) -> Result<Decision, String> {
    let reply: DecisionReply = serde_json::from_str(strip_code_fence(text))
        .map_err(|err| format!("the reply is not valid JSON of the requested shape: {err}"))?;
    let memory_idx = || match reply.memory {
        Some(memory_idx) if memory_idx < n_neighbours => Ok(memory_idx),
        Some(memory_idx) => Err(format!(
            "memory {memory_idx} does not exist; the stored facts are numbered 0 to {}",
            n_neighbours.saturating_sub(1)
        )),
        None => Err(format!("{:?} needs the number of a stored fact in \"memory\"", reply.decision)),
    };
    Ok(match reply.decision {
        DecisionKind::Add => Decision::Add,
        DecisionKind::Noop => Decision::Noop,
        DecisionKind::Delete => Decision::Delete { memory_idx: memory_idx()? },
        DecisionKind::Update => {
            let memory_idx = memory_idx()?;
            let fact = reply.fact.as_deref().map(str::trim).unwrap_or_default();
            if fact.is_empty() {
                return Err("UPDATE needs the merged fact in \"fact\"".to_owned());
            }
            let n_chars = fact.chars().count();
            if n_chars > MAX_FACT_CHARS {
                return Err(format!("the merged fact has {n_chars} characters; at most {MAX_FACT_CHARS} are allowed"));
            }
            Decision::Update { memory_idx, fact: fact.to_owned() }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::future::Future;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Wake, Waker};

    use uuid::Uuid;

    use super::*;
    use crate::generation::{ChatReply, Example, ExampleFact, ExampleTurn};

    /// A chat model that answers from a script and records what it was asked.
    #[derive(Default)]
    struct ScriptedModel {
        replies: Mutex<VecDeque<Result<ChatReply, ExtractError>>>,
        requests: Mutex<Vec<ChatRequest>>,
    }

    impl ScriptedModel {
        fn new(replies: Vec<Result<ChatReply, ExtractError>>) -> Arc<ScriptedModel> {
            Arc::new(ScriptedModel { replies: Mutex::new(replies.into()), requests: Mutex::default() })
        }

        fn requests(&self) -> Vec<ChatRequest> {
            self.requests.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl ChatModel for ScriptedModel {
        async fn chat(&self, request: ChatRequest) -> Result<ChatReply, ExtractError> {
            self.requests.lock().unwrap().push(request);
            self.replies.lock().unwrap().pop_front().expect("the script has a reply for every call")
        }
    }

    fn reply(text: &str) -> Result<ChatReply, ExtractError> {
        Ok(ChatReply { text: text.to_owned(), input_tokens: 100, output_tokens: 10 })
    }

    /// The scripted model never waits, so a parking loop is all the executor these tests need.
    fn block_on<F: Future>(future: F) -> F::Output {
        struct ThreadWaker(std::thread::Thread);
        impl Wake for ThreadWaker {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let mut future = std::pin::pin!(future);
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut context = Context::from_waker(&waker);
        loop {
            match future.as_mut().poll(&mut context) {
                Poll::Ready(output) => return output,
                Poll::Pending => std::thread::park(),
            }
        }
    }

    fn turns(n_turns: usize) -> Vec<Turn> {
        (0..n_turns)
            .map(|turn_idx| Turn {
                event_id: Uuid::from_u128(turn_idx as u128 + 1),
                role: if turn_idx % 2 == 0 { Role::User } else { Role::Assistant },
                author: if turn_idx % 2 == 0 { "user" } else { "assistant" }.to_owned(),
                content: format!("turn {turn_idx}"),
                said_at: chrono::DateTime::UNIX_EPOCH,
            })
            .collect()
    }

    const GOOD: &str = r#"{"facts": [
        {"fact": "User's favourite colour is blue", "topic": "USER_PREFERENCES", "confidence": 0.9,
         "source_turns": [0, 2, 0], "action": "remember"},
        {"fact": "User's home address", "topic": "EXPLICIT_INSTRUCTIONS", "confidence": 1,
         "source_turns": [2], "action": "forget"}
    ]}"#;

    fn extract(extractor: &LlmExtractor, turns: &[Turn]) -> (Result<Vec<Candidate>, ExtractError>, LlmUsage) {
        let mut usage = LlmUsage::default();
        let result = block_on(extractor.extract(turns, &GenerationConfig::default(), &mut usage));
        (result, usage)
    }

    #[test]
    fn a_good_reply_becomes_candidates() {
        let model = ScriptedModel::new(vec![reply(GOOD)]);
        let extractor = LlmExtractor::new(model.clone());
        let (result, usage) = extract(&extractor, &turns(3));
        let candidates = result.unwrap();
        assert_eq!(
            candidates,
            vec![
                Candidate {
                    fact: "User's favourite colour is blue".to_owned(),
                    topic: "USER_PREFERENCES".to_owned(),
                    confidence: 0.9,
                    source_event_ids: vec![Uuid::from_u128(1), Uuid::from_u128(3)],
                    kind: CandidateKind::Assert,
                },
                Candidate {
                    fact: "User's home address".to_owned(),
                    topic: "EXPLICIT_INSTRUCTIONS".to_owned(),
                    confidence: 1.0,
                    source_event_ids: vec![Uuid::from_u128(3)],
                    kind: CandidateKind::Forget,
                },
            ]
        );
        assert_eq!(usage, LlmUsage { calls: 1, input_tokens: 100, output_tokens: 10, repairs: 0 });
        let requests = model.requests();
        assert!(requests[0].json);
        assert!(requests[0].system.contains("USER_PREFERENCES: The user's stated or implied likes"));
        assert!(requests[0].system.contains("\"source_turns\""), "the schema is in the prompt");
        assert!(requests[0].messages[0].content.contains("[1] 1970-01-01 assistant: turn 1"));
    }

    #[test]
    fn an_empty_list_is_a_valid_answer() {
        let model = ScriptedModel::new(vec![reply(r#"{"facts": []}"#)]);
        let extractor = LlmExtractor::new(model.clone());
        let (result, usage) = extract(&extractor, &turns(2));
        assert_eq!(result.unwrap(), Vec::new());
        assert_eq!(usage.repairs, 0);
        let (result, usage) = extract(&extractor, &[]);
        assert_eq!(result.unwrap(), Vec::new(), "no turns, no call");
        assert_eq!(usage.calls, 0);
    }

    #[test]
    fn a_fenced_reply_is_accepted() {
        let model = ScriptedModel::new(vec![reply(&format!("```json\n{GOOD}\n```\n"))]);
        let extractor = LlmExtractor::new(model.clone());
        let (result, usage) = extract(&extractor, &turns(3));
        assert_eq!(result.unwrap().len(), 2);
        assert_eq!(usage.repairs, 0);
    }

    #[test]
    fn a_malformed_reply_is_repaired() {
        let bad_topic = r#"{"facts": [{"fact": "User likes tea", "topic": "HOBBIES", "confidence": 0.5,
            "source_turns": [0], "action": "remember"}]}"#;
        let model = ScriptedModel::new(vec![reply("Sure! Here are the facts."), reply(bad_topic), reply(GOOD)]);
        let extractor = LlmExtractor::new(model.clone());
        let (result, usage) = extract(&extractor, &turns(3));
        assert_eq!(result.unwrap().len(), 2);
        assert_eq!(usage, LlmUsage { calls: 3, input_tokens: 300, output_tokens: 30, repairs: 2 });

        let requests = model.requests();
        let last = &requests[2].messages;
        assert_eq!(last.len(), 5, "prompt, bad reply, repair, bad reply, repair");
        assert_eq!(last[1], ChatMessage { role: Role::Assistant, content: "Sure! Here are the facts.".to_owned() });
        assert!(last[2].content.contains("not valid JSON"), "{}", last[2].content);
        assert_eq!(last[3].role, Role::Assistant);
        assert!(
            last[4].content.contains(r#"facts[0].topic "HOBBIES" is not one of the topics"#),
            "{}",
            last[4].content
        );
    }

    #[test]
    fn the_rules_are_checked() {
        let topics = ["A", "B"];
        let check = |facts: &str, expect: &str| {
            let text = format!(r#"{{"facts": [{facts}]}}"#);
            let err = validate_facts(&text, &topics, 3).err().unwrap_or_else(|| panic!("{facts} passed"));
            assert!(err.contains(expect), "{err} does not say {expect}");
        };
        let fact = |fact: &str, confidence: &str, turns: &str, action: &str| {
            format!(
                r#"{{"fact": {fact}, "topic": "A", "confidence": {confidence}, "source_turns": {turns}, "action": {action}}}"#
            )
        };
        check(&fact(r#""  ""#, "0.5", "[0]", r#""remember""#), "facts[0].fact is empty");
        check(&fact(&format!("{:?}", "x".repeat(4001)), "0.5", "[0]", r#""remember""#), "4001 characters");
        check(&fact(r#""f""#, "1.5", "[0]", r#""remember""#), "confidence 1.5 is not between 0 and 1");
        check(&fact(r#""f""#, "-0.1", "[0]", r#""remember""#), "not between 0 and 1");
        check(&fact(r#""f""#, "0.5", "[]", r#""remember""#), "source_turns is empty");
        check(&fact(r#""f""#, "0.5", "[1, 3]", r#""remember""#), "names turn 3, but the turns are numbered 0 to 2");
        check(&fact(r#""f""#, "0.5", "[-1]", r#""remember""#), "not valid JSON");
        check(&fact(r#""f""#, "0.5", "[0]", r#""keep""#), "unknown variant `keep`");
        check(r#"{"fact": "f", "topic": "A", "confidence": 0.5, "source_turns": [0]}"#, "missing field `action`");
        let ok = fact(r#""f""#, "0.5", "[0]", r#""remember""#);
        check(&format!(r#"{ok}, {}"#, fact(r#""g""#, "0.5", "[0]", "null")), "expected value");
        assert!(validate_facts(r#"{"facts": null}"#, &topics, 3).is_err());
        assert_eq!(validate_facts(&format!(r#"{{"facts": [{ok}]}}"#), &topics, 3).unwrap().len(), 1);
    }

    #[test]
    fn output_still_invalid_after_the_repairs_fails_as_transient() {
        let model = ScriptedModel::new(vec![reply("nope"), reply("{}"), reply(r#"{"facts": [{"fact": "x"}]}"#)]);
        let extractor = LlmExtractor::new(model.clone());
        let (result, usage) = extract(&extractor, &turns(3));
        let Err(ExtractError::Transient(message)) = result else { panic!("expected a transient error: {result:?}") };
        assert!(message.starts_with("model output invalid after 2 repairs: "), "{message}");
        assert!(message.contains("missing field `topic`"), "the last reason is given: {message}");
        assert_eq!(usage, LlmUsage { calls: 3, input_tokens: 300, output_tokens: 30, repairs: 2 });
    }

    #[test]
    fn provider_errors_pass_through() {
        for error in [ExtractError::Permanent("401 invalid key".to_owned()), ExtractError::Transient("429".to_owned())]
        {
            let model = ScriptedModel::new(vec![Err(error.clone())]);
            let extractor = LlmExtractor::new(model.clone());
            let (result, usage) = extract(&extractor, &turns(3));
            assert_eq!(result, Err(error));
            assert_eq!(usage.calls, 0);
        }
        // A failure during a repair ends the attempt too, keeping the usage so far.
        let model = ScriptedModel::new(vec![reply("nope"), Err(ExtractError::Transient("timeout".to_owned()))]);
        let extractor = LlmExtractor::new(model.clone());
        let (result, usage) = extract(&extractor, &turns(3));
        assert_eq!(result, Err(ExtractError::Transient("timeout".to_owned())));
        assert_eq!(usage, LlmUsage { calls: 1, input_tokens: 100, output_tokens: 10, repairs: 1 });
    }

    #[test]
    fn long_conversations_take_one_call_per_window() {
        let window_reply = |turn_idx: usize| {
            reply(&format!(
                r#"{{"facts": [{{"fact": "User f", "topic": "USER_PERSONAL_INFO", "confidence": 0.5,
                    "source_turns": [{turn_idx}], "action": "remember"}}]}}"#
            ))
        };
        let model = ScriptedModel::new(vec![window_reply(1), window_reply(1), window_reply(0)]);
        let extractor = LlmExtractor::with_limits(model.clone(), 2, 2);
        let (result, usage) = extract(&extractor, &turns(5));
        assert_eq!(usage, LlmUsage { calls: 3, input_tokens: 300, output_tokens: 30, repairs: 0 });
        // Turns are numbered within their window: windows [0, 1], [2, 3] and [4].
        let ids: Vec<Vec<Uuid>> = result.unwrap().into_iter().map(|candidate| candidate.source_event_ids).collect();
        assert_eq!(ids, [vec![Uuid::from_u128(2)], vec![Uuid::from_u128(4)], vec![Uuid::from_u128(5)]]);
        let prompts: Vec<String> =
            model.requests().into_iter().map(|request| request.messages[0].content.clone()).collect();
        assert!(
            prompts[1].contains("[0] 1970-01-01 user: turn 2\n[1] 1970-01-01 assistant: turn 3\n\n"),
            "{}",
            prompts[1]
        );
        assert!(prompts[2].contains("numbered 0 to 0:\n\n[0] 1970-01-01 user: turn 4\n\n"), "{}", prompts[2]);
    }

    #[test]
    fn examples_and_custom_topics_are_in_the_prompt() {
        let model = ScriptedModel::new(vec![reply(r#"{"facts": []}"#)]);
        let extractor = LlmExtractor::new(model.clone());
        let config = GenerationConfig {
            topics: vec![
                TopicSpec { name: "FOOD".to_owned(), description: Some("What the user eats.".to_owned()) },
                TopicSpec { name: "USER_PREFERENCES".to_owned(), description: None },
            ],
            examples: vec![Example {
                conversation: vec![ExampleTurn { role: Role::User, content: "I am vegan".to_owned() }],
                facts: vec![ExampleFact { fact: "User is vegan".to_owned(), topic: "FOOD".to_owned() }],
            }],
            ..GenerationConfig::default()
        };
        let mut usage = LlmUsage::default();
        block_on(extractor.extract(&turns(1), &config, &mut usage)).unwrap();
        let system = &model.requests()[0].system;
        assert!(system.contains("- FOOD: What the user eats."), "{system}");
        assert!(system.contains("- USER_PREFERENCES: The user's stated"), "{system}");
        assert!(!system.contains("USER_PERSONAL_INFO"), "only the configured topics: {system}");
        assert!(
            system.contains("[0] user: I am vegan\nFacts:\n{\"fact\":\"User is vegan\",\"topic\":\"FOOD\"}"),
            "{system}"
        );
    }

    fn neighbours() -> Vec<Neighbour> {
        vec![
            Neighbour { id: Uuid::from_u128(10), fact: "User lives in Paris".to_owned(), similarity: 0.81 },
            Neighbour { id: Uuid::from_u128(11), fact: "User works in Paris".to_owned(), similarity: 0.78 },
        ]
    }

    fn candidate() -> Candidate {
        Candidate {
            fact: "User moved to Lyon".to_owned(),
            topic: "USER_PERSONAL_INFO".to_owned(),
            confidence: 0.9,
            source_event_ids: vec![Uuid::from_u128(1)],
            kind: CandidateKind::Assert,
        }
    }

    fn judge(replies: Vec<Result<ChatReply, ExtractError>>) -> (Result<Option<Verdict>, ExtractError>, LlmUsage) {
        let model = ScriptedModel::new(replies);
        let extractor = LlmExtractor::new(model);
        let mut usage = LlmUsage::default();
        let result = block_on(extractor.judge(&candidate(), &neighbours(), &mut usage));
        (result, usage)
    }

    #[test]
    fn judge_decisions_map_to_verdicts() {
        let check = |text: &str, expect: Verdict| {
            let (result, usage) = judge(vec![reply(text)]);
            assert_eq!(result, Ok(Some(expect)), "{text}");
            assert_eq!(usage.calls, 1);
        };
        check(r#"{"decision": "ADD", "memory": null, "fact": null}"#, Verdict::Add);
        check(r#"{"decision": "NOOP", "memory": 1, "fact": null}"#, Verdict::Noop);
        check(
            r#"{"decision": "DELETE", "memory": 1, "fact": null}"#,
            Verdict::Delete { memory_id: Uuid::from_u128(11) },
        );
        check(
            "```\n{\"decision\": \"UPDATE\", \"memory\": 0, \"fact\": \" User lives in Lyon \"}\n```",
            Verdict::Update { memory_id: Uuid::from_u128(10), fact: "User lives in Lyon".to_owned() },
        );
    }

    #[test]
    fn judge_replies_are_validated_and_repaired() {
        let (result, usage) = judge(vec![
            reply(r#"{"decision": "UPDATE", "memory": 0, "fact": null}"#),
            reply(r#"{"decision": "DELETE", "memory": 2, "fact": null}"#),
            reply(r#"{"decision": "DELETE", "memory": 0, "fact": null}"#),
        ]);
        assert_eq!(result, Ok(Some(Verdict::Delete { memory_id: Uuid::from_u128(10) })));
        assert_eq!(usage.repairs, 2);

        let (result, _) = judge(vec![
            reply(r#"{"decision": "MERGE"}"#),
            reply(r#"{"decision": "DELETE", "memory": null}"#),
            reply(r#"{"decision": "DELETE", "memory": 5}"#),
        ]);
        let Err(ExtractError::Transient(message)) = result else { panic!("{result:?}") };
        assert!(message.contains("memory 5 does not exist; the stored facts are numbered 0 to 1"), "{message}");
    }

    #[test]
    fn judge_prompt_numbers_the_neighbours() {
        let model = ScriptedModel::new(vec![reply(r#"{"decision": "ADD", "memory": null, "fact": null}"#)]);
        let extractor = LlmExtractor::new(model.clone());
        let mut usage = LlmUsage::default();
        block_on(extractor.judge(&candidate(), &neighbours(), &mut usage)).unwrap();
        let prompt = &model.requests()[0].messages[0].content;
        assert!(prompt.starts_with("New fact (topic USER_PERSONAL_INFO): User moved to Lyon"), "{prompt}");
        assert!(prompt.contains("[0] User lives in Paris (similarity 0.81)\n[1] User works in Paris"), "{prompt}");

        let mut usage = LlmUsage::default();
        let verdict = block_on(extractor.judge(&candidate(), &[], &mut usage)).unwrap();
        assert_eq!(verdict, Some(Verdict::Add), "nothing to compare with");
        assert_eq!(usage.calls, 0);
    }

    #[test]
    fn fences_are_stripped() {
        let check = |text: &str, expect: &str| assert_eq!(strip_code_fence(text), expect, "{text:?}");
        check("{}", "{}");
        check("  ```json\n{\"a\": 1}\n```  ", "{\"a\": 1}");
        check("```\n{}\n```", "{}");
        check("```json\n{}", "{}");
        check("```", "");
    }
}
