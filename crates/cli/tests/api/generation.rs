//! Memory generation end to end: jobs over sessions, inline events and direct facts; the rules
//! extractor; consolidation with revisions and provenance; idempotency; concurrency; the llm
//! extractor against local servers speaking the OpenAI and Anthropic protocols.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply};
use crate::helpers::{
    TestApp, client_with_key, id_of, json_of, memories_path, problem_of, spawn_app, spawn_app_with, url_encode,
};

/// Submits a job and returns its id.
async fn generate(app: &TestApp, body: Value) -> String {
    let response = app.post("/api/v1/memories/generate", &body).await;
    let location = response.headers().get("location").map(|value| value.to_str().unwrap().to_owned());
    let job = json_of(response, StatusCode::ACCEPTED).await;
    assert_eq!(location.as_deref(), Some(format!("/api/v1/jobs/{}", id_of(&job)).as_str()));
    assert_eq!(job["status"], "pending");
    id_of(&job)
}

/// Polls a job until it completes or fails.
async fn completed(app: &TestApp, body: Value) -> Value {
    let job_id = generate(app, body).await;
    let job = app.finished(&job_id).await;
    assert_eq!(job["status"], "completed", "{job}");
    job
}

/// Each memory's fact and when it was said.
fn said_at(memories: &[Value]) -> BTreeMap<String, String> {
    memories
        .iter()
        .map(|memory| (memory["fact"].as_str().unwrap().to_owned(), memory["said_at"].as_str().unwrap().to_owned()))
        .collect()
}

async fn live_memories(app: &TestApp, scope: &Value) -> Vec<Value> {
    let listed = json_of(app.get(&memories_path(scope, "&limit=100")).await, StatusCode::OK).await;
    listed["memories"].as_array().unwrap().clone()
}

fn facts(memories: &[Value]) -> BTreeSet<String> {
    memories.iter().map(|memory| memory["fact"].as_str().unwrap().to_owned()).collect()
}

fn with_fact<'a>(memories: &'a [Value], needle: &str) -> Vec<&'a Value> {
    memories.iter().filter(|memory| memory["fact"].as_str().unwrap().contains(needle)).collect()
}

async fn revisions(app: &TestApp, memory_id: &str) -> Vec<Value> {
    let body = json_of(app.get(&format!("/api/v1/memories/{memory_id}/revisions")).await, StatusCode::OK).await;
    body["revisions"].as_array().unwrap().clone()
}

fn user(content: &str) -> Value {
    json!({"author": "user", "role": "user", "content": content})
}

#[tokio::test]
async fn a_session_becomes_memories_that_follow_its_changes() {
    let app = spawn_app().await;
    let scope = json!({"user_id": "alice"});
    let session = app.create_session(&json!({"user_id": "alice"})).await;
    let session_id = id_of(&session);
    let first = app
        .append(
            &session_id,
            &json!({"events": [
                user("Hi! My name is Alice."),
                {"author": "assistant", "role": "assistant", "content": "Nice to meet you, Alice! I love helping."},
                user("I live in Paris."),
                user("My favourite colour is blue."),
                user("I love hiking in the mountains."),
                user("I work at Acme Corp."),
                user("Please remember that my sister's birthday is on March 3rd."),
                user("What's the weather like?")
            ]}),
        )
        .await;
    let first_events = first["events"].as_array().unwrap();
    let job = completed(&app, json!({"source_type": "session", "source_reference": session_id})).await;
    assert_eq!(job["events_processed"], 8);
    assert_eq!(job["source_type"], "session");
    assert_eq!(job["scope"], scope, "the session's scope by default");
    let memories = live_memories(&app, &scope).await;
    let known = facts(&memories);
    assert_eq!(memories.len(), job["counts"]["added"].as_u64().unwrap() as usize, "{known:?}");
    for expected in ["Alice", "Paris", "blue", "hiking", "Acme", "birthday"] {
        assert_eq!(with_fact(&memories, expected).len(), 1, "one memory about {expected}: {known:?}");
    }
    assert!(with_fact(&memories, "Nice to meet you").is_empty(), "the assistant's words are not the user's facts");
    assert!(with_fact(&memories, "weather").is_empty(), "questions are not facts");
    let colour = with_fact(&memories, "blue")[0].clone();
    assert_eq!(colour["topic"], "USER_PREFERENCES");
    assert_eq!(colour["source_session_id"], session["id"]);
    assert_eq!(colour["source_event_ids"], json!([first_events[3]["id"]]), "provenance: the event that said it");
    let birthday = with_fact(&memories, "birthday")[0];
    assert_eq!(birthday["topic"], "EXPLICIT_INSTRUCTIONS");
    let created = revisions(&app, &id_of(&colour)).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["action"], "created");
    assert_eq!(created[0]["job_id"], job["id"]);
    assert_eq!(created[0]["cause"]["source_event_ids"], json!([first_events[3]["id"]]));
    assert!(created[0]["cause"]["extracted_fact"]["fact"].as_str().unwrap().contains("blue"));

    // The conversation goes on: a changed preference, a move, a forget request.
    let second = app
        .append(
            &session_id,
            &json!({"events": [
                user("My favourite colour is green."),
                user("I moved to Berlin."),
                user("Please forget that I work at Acme Corp.")
            ]}),
        )
        .await;
    let second_events = second["events"].as_array().unwrap();
    let job = completed(&app, json!({"source_type": "session", "source_reference": session_id})).await;
    assert_eq!(job["events_processed"], 3, "only the new events are read");
    let memories = live_memories(&app, &scope).await;
    let known = facts(&memories);
    assert!(with_fact(&memories, "blue").is_empty(), "{known:?}");
    let green = with_fact(&memories, "green");
    assert_eq!(green.len(), 1, "{known:?}");
    assert_eq!(green[0]["id"], colour["id"], "the same memory, updated: {known:?}");
    assert_eq!(green[0]["source_event_ids"], json!([second_events[0]["id"]]));
    assert!(with_fact(&memories, "Paris").is_empty(), "{known:?}");
    assert_eq!(with_fact(&memories, "Berlin").len(), 1, "{known:?}");
    assert!(with_fact(&memories, "Acme").is_empty(), "forgotten: {known:?}");
    assert_eq!(job["counts"]["updated"], 2, "{job}");
    assert_eq!(job["counts"]["deleted"], 1, "{job}");
    assert!(job["memories_updated"].as_array().unwrap().contains(&colour["id"]));

    let history = revisions(&app, &id_of(&colour)).await;
    assert_eq!(history.len(), 2);
    let update = &history[1];
    assert_eq!(update["action"], "updated");
    assert_eq!(update["job_id"], job["id"]);
    assert!(update["before"]["fact"].as_str().unwrap().contains("blue"));
    assert!(update["after"]["fact"].as_str().unwrap().contains("green"));
    assert_eq!(update["cause"]["reason"], "same attribute, new value");
    assert_eq!(update["cause"]["source_event_ids"], json!([second_events[0]["id"]]));
    let forgotten = &job["memories_deleted"][0];
    let history = revisions(&app, forgotten.as_str().unwrap()).await;
    assert_eq!(history.last().unwrap()["action"], "deleted");
    assert_eq!(history.last().unwrap()["cause"]["source_event_ids"], json!([second_events[2]["id"]]));

    // Generating again reads nothing new and changes nothing.
    let again = completed(&app, json!({"source_type": "session", "source_reference": session_id})).await;
    assert_eq!(again["events_processed"], 0);
    assert_eq!(again["counts"], json!({"added": 0, "updated": 0, "deleted": 0, "unchanged": 0}));
    // Re-reading the whole range finds only what is known.
    let ranged = completed(
        &app,
        json!({"source_type": "session", "source_reference": session_id, "event_range": {"from_seq": 1}}),
    )
    .await;
    assert_eq!(ranged["events_processed"], 11);
    let counts = &ranged["counts"];
    assert_eq!(
        (&counts["added"], &counts["updated"], &counts["deleted"]),
        (&json!(0), &json!(0), &json!(0)),
        "{ranged}"
    );
    assert!(counts["unchanged"].as_u64().unwrap() >= 5, "{ranged}");
    assert_eq!(live_memories(&app, &scope).await.len(), memories.len());

    // Any consolidation can be undone.
    let restored = json_of(
        app.post(&format!("/api/v1/memories/{}/restore", id_of(&colour)), &json!({"revision_id": created[0]["id"]}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(restored["fact"].as_str().unwrap().contains("blue"));
}

#[tokio::test]
async fn inline_events_and_direct_facts_are_idempotent() {
    let app = spawn_app().await;
    let scope = json!({"user_id": "bob", "app": "chef"});
    let body = json!({
        "source_type": "events",
        "scope": scope,
        "events": [user("I am allergic to peanuts."), user("I prefer spicy food.")]
    });
    let first = completed(&app, body.clone()).await;
    assert_eq!(first["counts"]["added"], 2, "{first}");
    let second = completed(&app, body).await;
    assert_eq!(second["counts"], json!({"added": 0, "updated": 0, "deleted": 0, "unchanged": 2}));
    let memories = live_memories(&app, &scope).await;
    assert_eq!(memories.len(), 2);
    // Ids of inline events are derived from the events: the same on every submission.
    assert_eq!(memories.iter().map(|memory| memory["source_event_ids"].to_string()).collect::<BTreeSet<_>>().len(), 2);

    // Direct facts: consolidated, not blindly added.
    let direct = json!({"source_type": "memories", "scope": scope, "memories": [
        {"fact": "User prefers spicy food", "topic": "USER_PREFERENCES"},
        {"fact": "User owns a cast-iron pan"}
    ]});
    let job = completed(&app, direct).await;
    assert_eq!(job["counts"]["added"], 1, "{job}");
    assert_eq!(job["counts"]["unchanged"], 1, "{job}");

    // POST /memories with consolidate: a job of one fact.
    let response = app
        .post("/api/v1/memories", &json!({"scope": scope, "fact": "User owns a cast-iron pan.", "consolidate": true}))
        .await;
    let job = json_of(response, StatusCode::ACCEPTED).await;
    let job = app.finished(&id_of(&job)).await;
    assert_eq!(job["counts"]["unchanged"], 1, "{job}");
    assert_eq!(live_memories(&app, &scope).await.len(), 3);

    // disable_consolidation adds as is.
    let job = completed(
        &app,
        json!({"source_type": "memories", "scope": scope, "memories": [{"fact": "User owns a cast-iron pan"}],
            "config": {"disable_consolidation": true}}),
    )
    .await;
    assert_eq!(job["counts"]["added"], 1);
}

#[tokio::test]
async fn concurrent_jobs_on_one_scope_do_not_duplicate() {
    let app = spawn_app_with(|settings| settings.worker.concurrency = 4).await;
    let scope = json!({"user_id": "carol"});
    let statements = [
        "I live in Lisbon.",
        "My favourite food is bacalhau.",
        "I have two cats.",
        "I enjoy surfing.",
        "I work as a nurse.",
    ];
    let mut job_ids = Vec::new();
    for round in 0..8 {
        // Overlapping subsets of the same statements.
        let events: Vec<Value> = (0..3).map(|i| user(statements[(round + i) % statements.len()])).collect();
        job_ids.push(generate(&app, json!({"source_type": "events", "scope": scope, "events": events})).await);
    }
    for job_id in &job_ids {
        let job = app.finished(job_id).await;
        assert_eq!(job["status"], "completed", "{job}");
    }
    let memories = live_memories(&app, &scope).await;
    assert_eq!(memories.len(), statements.len(), "{:?}", facts(&memories));
}

#[tokio::test]
async fn bad_generation_requests_are_refused() {
    let app = spawn_app().await;
    let session = app.create_session(&json!({"user_id": "dave"})).await;
    let cases = [
        (json!({"source_type": "nope"}), "validation_failed"),
        (json!({"source_type": "session"}), "validation_failed"),
        (json!({"source_type": "events", "events": [user("I like tea.")]}), "validation_failed"),
        (json!({"source_type": "events", "scope": {"user_id": "d"}, "events": []}), "validation_failed"),
        (json!({"source_type": "events", "scope": {"user_id": "d"}, "events": [user("  ")]}), "validation_failed"),
        (
            json!({"source_type": "memories", "scope": {"user_id": "d"}, "memories": [{"fact": ""}]}),
            "validation_failed",
        ),
        (
            json!({"source_type": "session", "source_reference": session["id"], "config": {"extractor": "llm"}}),
            "validation_failed",
        ),
        (
            json!({"source_type": "session", "source_reference": session["id"], "config": {"topics": [{"name": "MINE"}]}}),
            "validation_failed",
        ),
        (
            json!({"source_type": "session", "source_reference": session["id"], "event_range": {"from_seq": 5, "to_seq": 2}}),
            "validation_failed",
        ),
        (
            json!({"source_type": "session", "source_reference": session["id"], "events": [user("x")]}),
            "validation_failed",
        ),
        (json!({"source_type": "session", "source_reference": session["id"], "bogus": 1}), "validation_failed"),
    ];
    for (body, code) in cases {
        let problem =
            problem_of(app.post("/api/v1/memories/generate", &body).await, StatusCode::UNPROCESSABLE_ENTITY, code)
                .await;
        assert!(problem["field"].is_string(), "{body}: {problem}");
    }
    let missing = json!({"source_type": "session", "source_reference": "0190b8a4-0000-7000-8000-000000000001"});
    problem_of(app.post("/api/v1/memories/generate", &missing).await, StatusCode::NOT_FOUND, "session_not_found").await;
    problem_of(
        app.get("/api/v1/jobs/0190b8a4-0000-7000-8000-000000000001").await,
        StatusCode::NOT_FOUND,
        "job_not_found",
    )
    .await;
    problem_of(app.get("/api/v1/jobs/not-a-uuid").await, StatusCode::NOT_FOUND, "job_not_found").await;
}

#[tokio::test]
async fn jobs_obey_scope_constraints_and_permissions() {
    let app = spawn_app().await;
    let create_key =
        |permissions: Value, scope: Value| json!({"name": "k", "permissions": permissions, "scope": scope});
    let key_of = |body: Value| body["key"].as_str().unwrap().to_owned();
    let u1 = key_of(
        json_of(
            app.post(
                "/api/v1/keys",
                &create_key(json!(["MEMORY_READ", "MEMORY_WRITE", "SESSION_READ"]), json!({"user_id": "u1"})),
            )
            .await,
            StatusCode::CREATED,
        )
        .await,
    );
    let writer_only = key_of(
        json_of(app.post("/api/v1/keys", &create_key(json!(["MEMORY_WRITE"]), Value::Null)).await, StatusCode::CREATED)
            .await,
    );
    let u1 = client_with_key(&u1);
    let other =
        completed(&app, json!({"source_type": "events", "scope": {"user_id": "u2"}, "events": [user("I like jazz.")]}))
            .await;
    let response = u1.get(app.url(&format!("/api/v1/jobs/{}", id_of(&other)))).send().await.unwrap();
    problem_of(response, StatusCode::NOT_FOUND, "job_not_found").await;
    let outside = json!({"source_type": "events", "scope": {"user_id": "u2"}, "events": [user("I like jazz.")]});
    let response = u1.post(app.url("/api/v1/memories/generate")).json(&outside).send().await.unwrap();
    problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;
    let session = app.create_session(&json!({"user_id": "u2"})).await;
    let from_session = json!({"source_type": "session", "source_reference": session["id"]});
    let response = u1.post(app.url("/api/v1/memories/generate")).json(&from_session).send().await.unwrap();
    problem_of(response, StatusCode::NOT_FOUND, "session_not_found").await;
    let response = client_with_key(&writer_only)
        .post(app.url("/api/v1/memories/generate"))
        .json(&from_session)
        .send()
        .await
        .unwrap();
    problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;
    let inside = json!({"source_type": "events", "scope": {"user_id": "u1"}, "events": [user("I like blues.")]});
    let response = u1.post(app.url("/api/v1/memories/generate")).json(&inside).send().await.unwrap();
    let job = json_of(response, StatusCode::ACCEPTED).await;
    let response = u1.get(app.url(&format!("/api/v1/jobs/{}", id_of(&job)))).send().await.unwrap();
    json_of(response, StatusCode::OK).await;
}

fn llm_settings(fake: &FakeLlm, provider: &str) -> impl FnOnce(&mut contextiq_server::Settings) {
    let base_url = fake.base_url.clone();
    let provider = provider.to_owned();
    move |settings| {
        settings.llm.provider = provider.parse().expect("a provider name");
        settings.llm.model = Some("test-model".to_owned());
        settings.llm.base_url = Some(base_url);
        settings.llm.api_key = Some("sk-test-secret".to_owned().into());
        settings.worker.retry_base_seconds = 0;
        settings.worker.max_attempts = 2;
    }
}

const GOOD_FACTS: &str = r#"{"facts": [
    {"fact": "User is training for a marathon", "topic": "KEY_CONVERSATION_DETAILS", "confidence": 0.9,
     "source_turns": [0], "action": "remember"},
    {"fact": "User is vegetarian", "topic": "USER_PERSONAL_INFO", "confidence": 0.95,
     "source_turns": [1], "action": "remember"}
]}"#;

fn conversation(scope: &Value) -> Value {
    json!({"source_type": "events", "scope": scope, "config": {"extractor": "llm"}, "events": [
        user("I'm training for the Berlin marathon in the autumn."),
        user("Oh and I stopped eating meat last year.")
    ]})
}

#[tokio::test]
async fn the_llm_extractor_speaks_openai_and_anthropic() {
    for provider in ["openai", "anthropic"] {
        let fake = FakeLlm::start(|_, _| Reply::Text(GOOD_FACTS.to_owned())).await;
        let app = spawn_app_with(llm_settings(&fake, provider)).await;
        let scope = json!({"user_id": "erin"});
        let job = completed(&app, conversation(&scope)).await;
        assert_eq!(job["extractor"], "llm");
        assert_eq!(job["counts"]["added"], 2, "{provider}: {job}");
        assert_eq!(job["llm_usage"]["calls"], 1, "{provider}: {job}");
        assert!(job["llm_usage"]["input_tokens"].as_u64().unwrap() > 0, "{provider}: {job}");
        let memories = live_memories(&app, &scope).await;
        assert_eq!(with_fact(&memories, "vegetarian")[0]["topic"], "USER_PERSONAL_INFO");
        let request = &fake.requests()[0];
        assert_eq!(request["model"], "test-model", "{provider}");
        assert!(fake.keys()[0].contains("sk-test-secret"), "{provider} sends the key");
        assert!(request.to_string().contains("Berlin marathon"), "{provider}: the turns are in the prompt");
    }
}

#[tokio::test]
async fn malformed_llm_output_is_repaired_or_fails_the_job_visibly() {
    // Malformed once, then good: one repair, the job completes.
    let fake = FakeLlm::start(|call, _| match call {
        0 => Reply::Text("Sure! Here are the facts: vegetarian, marathon".to_owned()),
        _ => Reply::Text(GOOD_FACTS.to_owned()),
    })
    .await;
    let app = spawn_app_with(llm_settings(&fake, "openai")).await;
    let job = completed(&app, conversation(&json!({"user_id": "f1"}))).await;
    assert_eq!(job["llm_usage"]["repairs"], 1, "{job}");
    assert_eq!(job["llm_usage"]["calls"], 2, "{job}");
    assert_eq!(job["counts"]["added"], 2);

    // Always malformed: every attempt fails, the job is dead-lettered with the reason.
    let fake = FakeLlm::start(|_, _| Reply::Text("{\"facts\": \"none\"}".to_owned())).await;
    let app = spawn_app_with(llm_settings(&fake, "openai")).await;
    let job_id = generate(&app, conversation(&json!({"user_id": "f2"}))).await;
    let job = app.finished(&job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 2);
    assert!(job["error"].as_str().unwrap().contains("invalid"), "{job}");
    assert!(live_memories(&app, &json!({"user_id": "f2"})).await.is_empty());

    // The provider fails: retried, then failed, with the reason and no key in it.
    let fake = FakeLlm::start(|_, _| Reply::Status(503)).await;
    let app = spawn_app_with(llm_settings(&fake, "anthropic")).await;
    let job_id = generate(&app, conversation(&json!({"user_id": "f3"}))).await;
    let job = app.finished(&job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 2, "transient failures are retried");
    assert!(!job["error"].as_str().unwrap().contains("sk-test-secret"));

    // A rejected key is not retried.
    let fake = FakeLlm::start(|_, _| Reply::Status(401)).await;
    let app = spawn_app_with(llm_settings(&fake, "openai")).await;
    let job_id = generate(&app, conversation(&json!({"user_id": "f4"}))).await;
    let job = app.finished(&job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
}

#[tokio::test]
async fn the_llm_judges_only_the_ambiguous_band() {
    let fake = FakeLlm::start(|_, text| {
        if text.contains("\"decision\"") {
            Reply::Text(r#"{"decision": "UPDATE", "memory": 0, "fact": "User is training for the Berlin marathon in October"}"#.to_owned())
        } else {
            Reply::Text(
                r#"{"facts": [{"fact": "User is training for the Berlin marathon in October", "topic": "KEY_CONVERSATION_DETAILS",
                 "confidence": 0.9, "source_turns": [0], "action": "remember"}]}"#
                    .to_owned(),
            )
        }
    })
    .await;
    // A band wide enough that the related fact below surely falls in it.
    let configure = llm_settings(&fake, "openai");
    let app = spawn_app_with(|settings| {
        configure(settings);
        settings.consolidation.related_threshold = 0.3;
        settings.consolidation.duplicate_threshold = 0.99;
    })
    .await;
    let scope = json!({"user_id": "gina"});
    // Exact duplicates are settled without the model.
    let direct =
        json!({"source_type": "memories", "scope": scope, "memories": [{"fact": "User is training for a marathon"}]});
    completed(&app, direct.clone()).await;
    let job = completed(&app, direct).await;
    assert_eq!(job["counts"]["unchanged"], 1);
    assert!(fake.requests().is_empty(), "no LLM call for direct facts and exact duplicates");
    // A related but different fact goes to the judge, which merges it into the memory.
    let job = completed(
        &app,
        json!({"source_type": "events", "scope": scope, "config": {"extractor": "llm"},
            "events": [user("I'm running the Berlin marathon in October.")]}),
    )
    .await;
    let judged = fake.requests().iter().filter(|request| request.to_string().contains("decision")).count();
    assert_eq!(judged, 1);
    assert_eq!(job["counts"]["updated"], 1, "{job}");
    assert_eq!(job["llm_usage"]["calls"], 2, "one extraction, one judgement: {job}");
    let memories = live_memories(&app, &scope).await;
    assert_eq!(memories.len(), 1);
    assert_eq!(memories[0]["fact"], "User is training for the Berlin marathon in October");
    let history = revisions(&app, &id_of(&memories[0])).await;
    assert_eq!(history[1]["cause"]["reason"], "judged to refine an existing memory");
}

#[tokio::test]
async fn finished_jobs_are_purged_after_their_retention() {
    let app = spawn_app_with(|settings| {
        settings.worker.job_retention_seconds = 0;
        settings.jobs.purge_interval_seconds = 1;
    })
    .await;
    let job = completed(
        &app,
        json!({"source_type": "events", "scope": {"user_id": "h"}, "events": [user("I collect stamps.")]}),
    )
    .await;
    let path = format!("/api/v1/jobs/{}", id_of(&job));
    for _ in 0..100 {
        if app.get(&path).await.status() == StatusCode::NOT_FOUND {
            // The memories the job made stay.
            assert_eq!(live_memories(&app, &json!({"user_id": "h"})).await.len(), 1);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the finished job was not purged");
}

#[tokio::test]
async fn a_long_session_is_read_in_parts() {
    let app = spawn_app_with(|settings| settings.worker.max_events_per_job = 3).await;
    let session = app.create_session(&json!({"user_id": "ivan"})).await;
    let session_id = id_of(&session);
    let statements = ["I live in Riga.", "I have a dog.", "I like chess.", "I play the violin.", "I speak Latvian."];
    let events: Vec<Value> = statements.iter().map(|text| user(text)).collect();
    app.append(&session_id, &json!({"events": events})).await;
    let generate = json!({"source_type": "session", "source_reference": session_id});
    let first = completed(&app, generate.clone()).await;
    assert_eq!((first["events_processed"].as_u64(), first["more_events_pending"].as_bool()), (Some(3), Some(true)));
    let second = completed(&app, generate.clone()).await;
    assert_eq!((second["events_processed"].as_u64(), second["more_events_pending"].as_bool()), (Some(2), Some(false)));
    let third = completed(&app, generate).await;
    assert_eq!(third["events_processed"], 0);
    assert_eq!(live_memories(&app, &json!({"user_id": "ivan"})).await.len(), statements.len());
}

/// A new user's first conversation, as one job and as a job per turn: the rules path yields
/// each fact once, worded as a person would write it; a move replaces the old city; a topic
/// list keeps what the user asked to remember and to forget.
#[tokio::test]
async fn relative_dates_are_resolved_from_when_they_were_said() {
    let app = spawn_app().await;
    // Inline events carry their time; without one, the job's time counts.
    let scope = json!({"user_id": "dated"});
    let events = json!([
        {"role": "user", "content": "I'm flying to Tokyo next month.", "timestamp": "2026-03-10T09:00:00Z"},
        {"role": "user", "content": "My sister got married last year.", "timestamp": "2024-07-01T12:00:00+02:00"},
    ]);
    completed(&app, json!({"source_type": "events", "scope": scope, "events": events})).await;
    let expected: BTreeSet<String> =
        ["User is flying to Tokyo in April 2026", "User's sister got married in 2023"].map(str::to_owned).into();
    assert_eq!(facts(&live_memories(&app, &scope).await), expected);
    // Each memory was said when its turn was.
    assert_eq!(
        said_at(&live_memories(&app, &scope).await),
        BTreeMap::from([
            ("User is flying to Tokyo in April 2026".to_owned(), "2026-03-10T09:00:00Z".to_owned()),
            ("User's sister got married in 2023".to_owned(), "2024-07-01T10:00:00Z".to_owned()),
        ])
    );
    let bad = json!({"source_type": "events", "scope": scope, "events": [{"content": "x", "timestamp": "soon"}]});
    problem_of(
        app.post("/api/v1/memories/generate", &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    // A session's events count from their own timestamps.
    let session = app.create_session(&json!({"user_id": "dated-session"})).await;
    let session_id = session["id"].as_str().unwrap();
    app.append(
        session_id,
        &json!({"author": "user", "role": "user", "content": "We're moving to Oslo in two weeks.",
                "timestamp": "2026-05-04T10:00:00Z"}),
    )
    .await;
    completed(&app, json!({"source_type": "session", "source_reference": session_id})).await;
    let memories = live_memories(&app, &json!({"user_id": "dated-session"})).await;
    assert_eq!(facts(&memories), BTreeSet::from(["User is moving to Oslo around 18 May 2026".to_owned()]));
    assert_eq!(memories[0]["said_at"], "2026-05-04T10:00:00Z");
}

#[tokio::test]
async fn a_changed_value_is_said_when_the_change_was() {
    let app = spawn_app().await;
    let scope = json!({"user_id": "said-twice"});
    let said = |content: &str, at: &str| json!({"source_type": "events", "scope": scope, "events": [{"role": "user", "content": content, "timestamp": at}]});
    completed(&app, said("I live in Oslo.", "2025-01-10T09:00:00Z")).await;
    let first = live_memories(&app, &scope).await;
    assert_eq!(said_at(&first), BTreeMap::from([("User lives in Oslo".to_owned(), "2025-01-10T09:00:00Z".to_owned())]));
    // Said again later, the same fact keeps when it was first said; a new value takes its own time.
    completed(&app, said("I live in Oslo.", "2025-03-01T09:00:00Z")).await;
    assert_eq!(live_memories(&app, &scope).await[0]["said_at"], "2025-01-10T09:00:00Z");
    completed(&app, said("I live in Bergen now.", "2026-02-01T09:00:00Z")).await;
    let changed = live_memories(&app, &scope).await;
    assert_eq!(
        said_at(&changed),
        BTreeMap::from([("User lives in Bergen".to_owned(), "2026-02-01T09:00:00Z".to_owned())])
    );
    assert_eq!(id_of(&changed[0]), id_of(&first[0]), "the memory was updated, not replaced");
    // A job's direct facts were said when the job was asked for.
    let job = completed(
        &app,
        json!({"source_type": "memories", "scope": scope, "memories": [{"fact": "User plays the cello"}]}),
    )
    .await;
    let cello =
        live_memories(&app, &scope).await.into_iter().find(|memory| memory["fact"] == "User plays the cello").unwrap();
    assert_eq!(cello["said_at"], job["created_at"]);
}

#[tokio::test]
async fn a_first_conversation_yields_its_facts_in_plain_words() {
    let app = spawn_app().await;
    let turns = [
        "Hi, I'm Maria.",
        "I'm 34.",
        "I live in Berlin.",
        "I work as a nurse at the Charité.",
        "I'm vegetarian.",
        "I'm allergic to peanuts.",
        "I have a daughter called Lena, she is 6.",
        "We're planning a trip to Lisbon in October.",
        "I moved to Hamburg last month, so I don't live in Berlin any more.",
        "My favourite colour is green now, not blue.",
        "Remember that my dentist appointment is on Friday.",
        "Please never suggest seafood restaurants.",
    ];
    let expected: BTreeSet<String> = [
        "User's name is Maria",
        "User is 34 years old",
        "User lives in Hamburg",
        "User works as a nurse at the Charité",
        "User is vegetarian",
        "User is allergic to peanuts",
        "User has a daughter called Lena, who is 6 years old",
        "User is planning a trip to Lisbon in October",
        "User's favourite colour is green",
        "User's dentist appointment is on Friday",
        "User wants the assistant to never suggest seafood restaurants",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();

    let one_job = json!({"user_id": "maria-one-job"});
    let events: Vec<Value> = turns.iter().map(|turn| user(turn)).collect();
    completed(&app, json!({"source_type": "events", "scope": one_job, "events": events})).await;
    assert_eq!(facts(&live_memories(&app, &one_job).await), expected);

    let per_turn = json!({"user_id": "maria-per-turn"});
    for turn in turns {
        completed(&app, json!({"source_type": "events", "scope": per_turn, "events": [user(turn)]})).await;
    }
    assert_eq!(facts(&live_memories(&app, &per_turn).await), expected);
    // The profile of the conversation: the move replaced Berlin.
    let path = format!("/api/v1/memories/profile?scope={}", url_encode(&per_turn.to_string()));
    let profile = json_of(app.get(&path).await, StatusCode::OK).await;
    let values: BTreeMap<&str, &str> = profile["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["attribute"].as_str().unwrap(), entry["value"].as_str().unwrap()))
        .collect();
    for (attribute, value) in [
        ("name", "Maria"),
        ("age", "34 years old"),
        ("residence", "Hamburg"),
        ("occupation", "a nurse at the Charité"),
        ("diet", "vegetarian"),
        ("allergy:peanuts", "peanuts"),
        ("favourite colour", "green"),
        ("dentist appointment", "on Friday"),
    ] {
        assert_eq!(values.get(attribute), Some(&value), "{attribute} in {values:?}");
    }

    // Topics filter what is remembered unasked, never a request to remember or to forget.
    let topics = json!({"user_id": "maria-topics"});
    let mut events = events.clone();
    events.push(user("Forget that I'm allergic to peanuts."));
    let config = json!({"topics": ["USER_PERSONAL_INFO"]});
    completed(&app, json!({"source_type": "events", "scope": topics, "events": events, "config": config})).await;
    let kept = facts(&live_memories(&app, &topics).await);
    assert!(kept.contains("User's dentist appointment is on Friday"), "{kept:?}");
    assert!(kept.contains("User lives in Hamburg"), "{kept:?}");
    assert!(!kept.iter().any(|fact| fact.contains("peanuts")), "the forget request applies: {kept:?}");
    assert!(!kept.iter().any(|fact| fact.contains("favourite colour")), "not a requested topic: {kept:?}");
}
