//! Context engineering on every backend of the conformance runs: token counts on append, state
//! deltas kept on events, compaction jobs (on request, by policy; offline and through an LLM
//! speaking the OpenAI protocol), and context assembly within a budget.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply};
use crate::helpers::{SseReader, TestApp, client_with_key, id_of, json_of, problem_of, without_model};

async fn session(app: &TestApp, body: Value) -> String {
    id_of(&json_of(app.post("/api/v1/sessions", &body).await, StatusCode::CREATED).await)
}

async fn append_all(app: &TestApp, session_id: &str, events: Vec<Value>) -> Vec<Value> {
    let body = json!({ "events": events });
    let appended =
        json_of(app.post(&format!("/api/v1/sessions/{session_id}/events"), &body).await, StatusCode::CREATED).await;
    appended["events"].as_array().unwrap().clone()
}

async fn events(app: &TestApp, session_id: &str) -> Vec<Value> {
    let page =
        json_of(app.get(&format!("/api/v1/sessions/{session_id}/events?limit=1000")).await, StatusCode::OK).await;
    page["events"].as_array().unwrap().clone()
}

async fn get_session(app: &TestApp, session_id: &str) -> Value {
    json_of(app.get(&format!("/api/v1/sessions/{session_id}?include_events=false")).await, StatusCode::OK).await
}

async fn compact(app: &TestApp, session_id: &str, body: Option<Value>) -> Value {
    let request = app.client.post(app.url(&format!("/api/v1/sessions/{session_id}/compact")));
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let job = json_of(request.send().await.unwrap(), StatusCode::ACCEPTED).await;
    assert_eq!(job["source_type"], "compaction", "{job}");
    assert_eq!(job["source_reference"], session_id, "{job}");
    let job = app.finished(&id_of(&job)).await;
    assert_eq!(job["status"], "completed", "{job}");
    job
}

async fn context(app: &TestApp, session_id: &str, body: Value) -> Value {
    json_of(app.post(&format!("/api/v1/sessions/{session_id}/context"), &body).await, StatusCode::OK).await
}

fn turn(role: &str, content: &str) -> Value {
    json!({"author": role, "role": role, "content": content})
}

/// A conversation of `n` turns, alternating user and assistant, with a tool result at 4.
fn conversation(n: usize) -> Vec<Value> {
    (1..=n)
        .map(|seq| match seq {
            1 => turn("user", "Hi, my name is Maria and I live in Hamburg."),
            4 => json!({"author": "search_flights", "role": "tool", "content": {"results": ["TP 571 HAM-LIS 12:40"]}}),
            seq if seq % 2 == 1 => {
                turn("user", &format!("Question {seq}: what about the trip to Lisbon on day {seq}?"))
            }
            seq => {
                turn("assistant", &format!("Answer {seq}: the train leaves Hamburg at {seq}:15 from platform {seq}."))
            }
        })
        .collect()
}

#[tokio::test]
async fn events_carry_their_token_counts_and_state_deltas_and_sessions_their_totals() {
    let app = without_model::spawn_app().await;
    let id = session(&app, json!({"user_id": "maria", "state": {"step": 0}})).await;
    let appended = append_all(
        &app,
        &id,
        vec![
            json!({"author": "user", "content": "Hello, world!", "actions": {"state_delta": {"step": 1, "city": "Hamburg"}}}),
            json!({"author": "agent", "role": "assistant",
                   "content": "I moved to Hamburg last month, so I don't live in Berlin any more."}),
        ],
    )
    .await;
    // o200k_base, the default: the same counts as OpenAI's tiktoken.
    assert_eq!(appended[0]["token_count"], 4, "{appended:?}");
    assert_eq!(appended[1]["token_count"], 16);
    assert_eq!(appended[0]["kind"], "message");
    assert_eq!(appended[0]["actions"]["state_delta"], json!({"step": 1, "city": "Hamburg"}));
    assert_eq!(appended[1]["actions"]["state_delta"], json!({}));
    let stored = get_session(&app, &id).await;
    assert_eq!(stored["token_count"], 20, "{stored}");
    assert_eq!(stored["state"], json!({"step": 1, "city": "Hamburg"}));
    assert_eq!(
        stored["compaction"],
        json!({"policy": null, "through_seq": 0, "uncompacted_events": 2, "uncompacted_tokens": 20})
    );
    // Read back as appended.
    assert_eq!(events(&app, &id).await[0]["actions"]["state_delta"]["city"], "Hamburg");
    // Clients cannot write the server's records or unknown actions.
    for bad in [
        json!({"author": "user", "content": "x", "actions": {"compaction": {}}}),
        json!({"author": "user", "content": "x", "actions": {"state_delta": [1]}}),
        json!({"author": "user", "content": "x", "kind": "compaction"}),
    ] {
        problem_of(
            app.post(&format!("/api/v1/sessions/{id}/events"), &bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    assert_eq!(get_session(&app, &id).await["event_count"], 2);

    let app =
        without_model::spawn_app_with(|settings| settings.sessions.tokenizer = contextiq_core::Tokenizer::Cl100kBase)
            .await;
    let id = session(&app, json!({"user_id": "maria"})).await;
    let appended =
        append_all(&app, &id, vec![turn("user", "I moved to Hamburg last month, so I don't live in Berlin any more.")])
            .await;
    assert_eq!(appended[0]["token_count"], 17);
}

#[tokio::test]
async fn a_compaction_summarises_a_range_without_touching_it_and_runs_once_per_job() {
    let app = without_model::spawn_app().await;
    let id = session(&app, json!({"user_id": "maria"})).await;
    append_all(&app, &id, conversation(12)).await;
    let before = events(&app, &id).await;

    let job = compact(&app, &id, Some(json!({"keep_recent_events": 2}))).await;
    let compaction = &job["compaction"];
    assert_eq!(compaction["start_seq"], 1, "{job}");
    assert_eq!(compaction["end_seq"], 10);
    assert_eq!(compaction["method"], "offline");
    let tokens_before = compaction["tokens_before"].as_u64().unwrap();
    let expected: u64 = before[..10].iter().map(|event| event["token_count"].as_u64().unwrap()).sum();
    assert_eq!(tokens_before, expected);
    assert!(compaction["tokens_after"].as_u64().unwrap() <= tokens_before.max(96), "{job}");
    assert_eq!(job["events_processed"], 10);

    let after = events(&app, &id).await;
    assert_eq!(after.len(), 13);
    assert_eq!(&after[..12], &before[..], "the compacted events are untouched");
    let summary = &after[12];
    assert_eq!(summary["id"], job["compaction_event_id"]);
    assert_eq!(summary["kind"], "compaction");
    assert_eq!(summary["role"], "system");
    assert_eq!(summary["author"], "contextiq");
    assert_eq!(summary["compaction"], *compaction);
    let text = summary["content"].as_str().unwrap();
    assert!(text.starts_with("Summary of events #1-#10 (10 turns, "), "{text}");
    assert!(text.contains("Hamburg") && text.contains("[#1]"), "the stated fact, with its event: {text}");
    assert!(!text.contains("HAM-LIS"), "tool output only by reference: {text}");
    assert!(text.contains("Last user request: \"Question 9"), "{text}");
    assert_eq!(summary["token_count"], compaction["tokens_after"]);

    let stored = get_session(&app, &id).await;
    assert_eq!(stored["compaction"]["through_seq"], 10, "{stored}");
    assert_eq!(stored["compaction"]["uncompacted_events"], 2);
    let kept: u64 = before[10..].iter().map(|event| event["token_count"].as_u64().unwrap()).sum();
    assert_eq!(stored["compaction"]["uncompacted_tokens"], kept);

    // Nothing new beyond the two kept: the next compaction keeping two writes nothing.
    let job = compact(&app, &id, Some(json!({"keep_recent_events": 2}))).await;
    assert_eq!(job["compaction"], json!(null), "{job}");
    assert_eq!(job["compaction_event_id"], json!(null));
    assert_eq!(events(&app, &id).await.len(), 13);
    // Without keeping any, the two are summarised next, after the first range.
    let job = compact(&app, &id, None).await;
    assert_eq!(job["compaction"]["start_seq"], 11, "{job}");
    assert_eq!(job["compaction"]["end_seq"], 12);
    let compaction = &job["compaction"];
    assert!(compaction["tokens_after"].as_u64() <= compaction["tokens_before"].as_u64(), "{job}");
    assert_eq!(get_session(&app, &id).await["compaction"]["uncompacted_events"], 0);

    // Errors change nothing.
    let path = format!("/api/v1/sessions/{id}/compact");
    problem_of(
        app.post(&path, &json!({"keep_recent_events": -1})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    problem_of(
        app.post(&path, &json!({"keep_recent_events": 10001})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    problem_of(app.post(&path, &json!({"other": 1})).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    let missing = "/api/v1/sessions/0190b8a4-0000-7000-8000-000000000001/compact";
    problem_of(app.post(missing, &json!({})).await, StatusCode::NOT_FOUND, "session_not_found").await;
    let generate = json!({"source_type": "compaction", "source_reference": id});
    problem_of(
        app.post("/api/v1/memories/generate", &generate).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(events(&app, &id).await.len(), 14);
}

#[tokio::test]
async fn policies_compact_by_themselves_per_session_and_server_wide() {
    let app = without_model::spawn_app().await;
    let policy = json!({"every_events": 4, "keep_recent_events": 1});
    let id = session(&app, json!({"user_id": "maria", "compaction_policy": policy})).await;
    assert_eq!(
        get_session(&app, &id).await["compaction"]["policy"],
        json!({"every_events": 4, "token_threshold": null, "keep_recent_events": 1})
    );
    append_all(&app, &id, conversation(3)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events(&app, &id).await.len(), 3, "not due: 2 summarisable events of 4");
    append_all(&app, &id, conversation(3)).await;
    let summary = wait_for_compaction(&app, &id).await;
    assert_eq!(summary["compaction"]["start_seq"], 1, "{summary}");
    assert_eq!(summary["compaction"]["end_seq"], 5);

    for bad in [
        json!({"every_events": 0}),
        json!({"token_threshold": 0}),
        json!({"keep_recent_events": 20000}),
        json!({"every": 3}),
    ] {
        let body = json!({"user_id": "maria", "compaction_policy": bad});
        problem_of(app.post("/api/v1/sessions", &body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .await;
    }

    let app = without_model::spawn_app_with(|settings| {
        settings.sessions.compaction_token_threshold = Some(60);
        settings.sessions.compaction_keep_recent_events = 2;
    })
    .await;
    let id = session(&app, json!({"user_id": "maria"})).await;
    append_all(&app, &id, conversation(8)).await;
    let summary = wait_for_compaction(&app, &id).await;
    assert_eq!(summary["compaction"]["end_seq"], 6, "{summary}");
}

async fn wait_for_compaction(app: &TestApp, session_id: &str) -> Value {
    for _ in 0..200 {
        if let Some(summary) = events(app, session_id).await.into_iter().find(|event| event["kind"] == "compaction") {
            return summary;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no compaction of {session_id}");
}

#[tokio::test]
async fn a_context_fits_its_budget_in_priority_order_and_is_reproducible() {
    let app = without_model::spawn_app().await;
    let id = session(&app, json!({"user_id": "maria", "state": {"cart": ["TP 571"]}})).await;
    append_all(&app, &id, conversation(30)).await;
    compact(&app, &id, Some(json!({"keep_recent_events": 10}))).await;
    append_all(&app, &id, vec![turn("user", "Which platform does the Lisbon train leave from?")]).await;
    for fact in ["User prefers window seats on trains", "User's favourite city is Lisbon"] {
        let body = json!({"scope": {"user_id": "maria"}, "fact": fact});
        json_of(app.post("/api/v1/memories", &body).await, StatusCode::CREATED).await;
    }

    let wide = context(&app, &id, json!({"budget_tokens": 4000})).await;
    assert!(wide["total_tokens"].as_u64().unwrap() <= 4000, "{wide}");
    assert_eq!(wide["tokenizer"], "o200k_base");
    assert_eq!(wide["query"], "Which platform does the Lisbon train leave from?");
    assert_eq!(wide["state"]["state"], json!({"cart": ["TP 571"]}));
    assert_eq!(wide["summaries"].as_array().unwrap().len(), 1, "{wide}");
    assert_eq!(wide["summaries"][0]["start_seq"], 1);
    assert_eq!(wide["summaries"][0]["end_seq"], 20);
    let seqs: Vec<i64> =
        wide["events"].as_array().unwrap().iter().map(|part| part["event"]["seq"].as_i64().unwrap()).collect();
    // The ten kept and the new turn; the summary event itself (31) is not repeated as an event.
    assert_eq!(seqs, (21..=30).chain([32]).collect::<Vec<_>>(), "{wide}");
    assert_eq!(wide["memories"].as_array().unwrap().len(), 2, "{wide}");
    assert_eq!(wide["coverage"], json!({"verbatim_from_seq": 21, "summarised": [[1, 20]], "unrepresented_events": 0}));
    let text = wide["text"].as_str().unwrap();
    let positions: Vec<usize> =
        ["Session state:", "Earlier conversation, events #1-#20 (summary):", "Relevant memories:", "Conversation:"]
            .iter()
            .map(|heading| text.find(heading).unwrap_or_else(|| panic!("{heading} in {text}")))
            .collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
    assert!(text.ends_with("[#32] user: Which platform does the Lisbon train leave from?"), "{text}");
    let parts: u64 = ["summaries", "memories", "events"]
        .iter()
        .flat_map(|part| wide[part].as_array().unwrap().iter().map(|p| p["token_count"].as_u64().unwrap()))
        .sum::<u64>()
        + wide["state"]["token_count"].as_u64().unwrap();
    // Each part's count includes its separators: together they bound the whole from above.
    assert!(parts >= wide["total_tokens"].as_u64().unwrap() && parts <= 4000, "parts {parts}: {wide}");

    // Reproducible.
    assert_eq!(context(&app, &id, json!({"budget_tokens": 4000})).await, wide);

    // Tight budgets keep the newest turn first and drop from the far end.
    let mut previous_events = usize::MAX;
    for budget in [400, 150, 40] {
        let tight = context(&app, &id, json!({"budget_tokens": budget})).await;
        assert!(tight["total_tokens"].as_u64().unwrap() <= budget, "{tight}");
        let events = tight["events"].as_array().unwrap();
        assert_eq!(events.last().unwrap()["event"]["seq"], 32, "{budget}: {tight}");
        assert!(events.len() <= previous_events);
        previous_events = events.len();
        let memory_tokens: u64 =
            tight["memories"].as_array().unwrap().iter().map(|m| m["token_count"].as_u64().unwrap()).sum();
        assert!(memory_tokens <= budget / 4, "{budget}: {tight}");
    }
    // A query of the caller's, no memories, no state.
    let narrow = context(
        &app,
        &id,
        json!({"budget_tokens": 4000, "query": "window seat", "memory_top_k": 0, "include_state": false}),
    )
    .await;
    assert_eq!(narrow["query"], "window seat");
    assert_eq!(narrow["memories"], json!([]));
    assert_eq!(narrow["state"], json!(null));
    assert!(!narrow["text"].as_str().unwrap().contains("Session state:"));

    // Bad input.
    let path = format!("/api/v1/sessions/{id}/context");
    for bad in [
        json!({}),
        json!({"budget_tokens": 0}),
        json!({"budget_tokens": 1_000_001}),
        json!({"budget_tokens": "100"}),
        json!({"budget_tokens": 100, "query": ""}),
        json!({"budget_tokens": 100, "memory_top_k": 101}),
        json!({"budget_tokens": 100, "other": true}),
    ] {
        problem_of(app.post(&path, &bad).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let missing = "/api/v1/sessions/0190b8a4-0000-7000-8000-000000000001/context";
    problem_of(app.post(missing, &json!({"budget_tokens": 100})).await, StatusCode::NOT_FOUND, "session_not_found")
        .await;

    // Credentials: another user's key does not reach the session; a key without MEMORY_READ
    // gets no memories.
    let key = |body: Value| {
        let app = &app;
        async move {
            json_of(app.post("/api/v1/keys", &body).await, StatusCode::CREATED).await["key"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let other = client_with_key(
        &key(json!({"name": "u2", "permissions": ["SESSION_READ", "MEMORY_READ"], "scope": {"user_id": "u2"}})).await,
    );
    let response = other.post(app.url(&path)).json(&json!({"budget_tokens": 100})).send().await.unwrap();
    problem_of(response, StatusCode::NOT_FOUND, "session_not_found").await;
    let sessions_only = client_with_key(&key(json!({"name": "s", "permissions": ["SESSION_READ"]})).await);
    let response = sessions_only.post(app.url(&path)).json(&json!({"budget_tokens": 4000})).send().await.unwrap();
    let seen = json_of(response, StatusCode::OK).await;
    assert_eq!(seen["memories"], json!([]), "{seen}");
    assert_eq!(seen["events"], wide["events"]);
}

#[tokio::test]
async fn with_a_model_configured_the_summary_is_the_models() {
    let fake = FakeLlm::start(|_, prompt| {
        if prompt.contains("You compact the history") {
            Reply::Text(r#"{"summary": "Maria lives in Hamburg and plans a trip to Lisbon. [#1] [#3]"}"#.to_owned())
        } else {
            Reply::Text(r#"{"facts": []}"#.to_owned())
        }
    })
    .await;
    let base_url = fake.base_url.clone();
    let app = without_model::spawn_app_with(move |settings| {
        settings.llm.provider = "openai".parse().unwrap();
        settings.llm.model = Some("test-model".to_owned());
        settings.llm.base_url = Some(base_url);
        settings.llm.api_key = Some("sk-test".to_owned().into());
    })
    .await;
    let id = session(&app, json!({"user_id": "maria"})).await;
    append_all(&app, &id, conversation(6)).await;
    let job = compact(&app, &id, None).await;
    assert_eq!(job["compaction"]["method"], "llm", "{job}");
    assert_eq!(job["llm_usage"]["calls"], 1);
    let summary = events(&app, &id).await.pop().unwrap();
    assert_eq!(summary["content"], "Maria lives in Hamburg and plans a trip to Lisbon. [#1] [#3]");
    let prompt = fake.requests()[0].to_string();
    assert!(prompt.contains("[#4] tool (search_flights)"), "{prompt}");
}

#[tokio::test]
async fn a_session_stream_sends_new_events_resumes_from_last_event_id_and_ends_with_the_session() {
    let app = without_model::spawn_app().await;
    let id = session(&app, json!({"user_id": "maria"})).await;
    append_all(&app, &id, conversation(2)).await;
    let stream_url = app.url(&format!("/api/v1/sessions/{id}/events/stream"));

    // By default only what is appended from now on; ?after_seq=0 from the first event.
    let mut live = SseReader::new(app.client.get(&stream_url).send().await.unwrap());
    let mut replay = SseReader::new(app.client.get(format!("{stream_url}?after_seq=0")).send().await.unwrap());
    for seq in 1..=2 {
        let sent = replay.next().await.unwrap();
        assert_eq!((sent.event.as_str(), sent.id.as_deref()), ("event", Some(seq.to_string().as_str())));
        assert_eq!(sent.data["seq"], seq);
    }
    append_all(&app, &id, vec![turn("user", "Is the train on time?")]).await;
    for reader in [&mut live, &mut replay] {
        let sent = reader.next().await.unwrap();
        assert_eq!(sent.id.as_deref(), Some("3"));
        assert_eq!(sent.data["content"], "Is the train on time?");
        assert_eq!(sent.data["token_count"], 6);
    }
    // A compaction (written by a worker, not through this request path) arrives too.
    compact(&app, &id, None).await;
    assert_eq!(live.next().await.unwrap().data["kind"], "compaction");

    // Resuming: the events after the Last-Event-ID, then the live ones.
    let response = app.client.get(&stream_url).header("last-event-id", "2").send().await.unwrap();
    let mut resumed = SseReader::new(response);
    assert_eq!(resumed.next().await.unwrap().id.as_deref(), Some("3"));
    assert_eq!(resumed.next().await.unwrap().id.as_deref(), Some("4"));

    // Deleting the session ends every stream of it.
    assert_eq!(app.delete(&format!("/api/v1/sessions/{id}")).await.status(), StatusCode::NO_CONTENT);
    for reader in [&mut live, &mut resumed] {
        let end = reader.next().await.unwrap();
        assert_eq!(end.event, "end");
        assert_eq!(end.data["reason"], "session_not_found");
        assert!(reader.next().await.is_none());
    }

    // Errors come before the stream starts.
    problem_of(
        app.get(&format!("/api/v1/sessions/{id}/events/stream")).await,
        StatusCode::NOT_FOUND,
        "session_not_found",
    )
    .await;
    let other = session(&app, json!({"user_id": "maria"})).await;
    let path = format!("/api/v1/sessions/{other}/events/stream");
    let bad = app.client.get(app.url(&path)).header("last-event-id", "x").send().await.unwrap();
    problem_of(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    problem_of(app.get(&format!("{path}?after_seq=-1")).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    let key = json_of(
        app.post("/api/v1/keys", &json!({"name": "u2", "permissions": ["SESSION_READ"], "scope": {"user_id": "u2"}}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let u2 = client_with_key(key["key"].as_str().unwrap());
    problem_of(u2.get(app.url(&path)).send().await.unwrap(), StatusCode::NOT_FOUND, "session_not_found").await;

    // A server shutting down ends its streams cleanly (the client resumes elsewhere).
    let mut open = SseReader::new(app.client.get(app.url(&path)).send().await.unwrap());
    let stopped = tokio::spawn(app.stop());
    assert!(open.next().await.is_none());
    stopped.await.unwrap();
}

#[tokio::test]
async fn a_job_stream_sends_each_change_until_the_job_is_finished() {
    let app = without_model::spawn_app().await;
    let id = session(&app, json!({"user_id": "maria"})).await;
    append_all(&app, &id, conversation(6)).await;
    let job =
        json_of(app.post(&format!("/api/v1/sessions/{id}/compact"), &json!({})).await, StatusCode::ACCEPTED).await;
    let mut stream =
        SseReader::new(app.client.get(app.url(&format!("/api/v1/jobs/{}/stream", id_of(&job)))).send().await.unwrap());
    let mut statuses = Vec::new();
    while let Some(sent) = stream.next().await {
        assert_eq!(sent.event, "job");
        assert_eq!(sent.data["id"], job["id"]);
        statuses.push(sent.data["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses.last().map(String::as_str), Some("completed"), "{statuses:?}");
    problem_of(
        app.get("/api/v1/jobs/0190b8a4-0000-7000-8000-000000000001/stream").await,
        StatusCode::NOT_FOUND,
        "job_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_model_that_cannot_summarise_leaves_the_offline_summary_on_the_last_attempt() {
    let fake = FakeLlm::start(|_, _| Reply::Text(r#"{"facts": []}"#.to_owned())).await;
    let base_url = fake.base_url.clone();
    let app = without_model::spawn_app_with(move |settings| {
        settings.llm.provider = "openai".parse().unwrap();
        settings.llm.model = Some("test-model".to_owned());
        settings.llm.base_url = Some(base_url);
        settings.llm.api_key = Some("sk-test".to_owned().into());
        settings.worker.max_attempts = 2;
        settings.worker.retry_base_seconds = 0;
    })
    .await;
    let id = session(&app, json!({"user_id": "maria"})).await;
    append_all(&app, &id, conversation(6)).await;
    let job = compact(&app, &id, None).await;
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["compaction"]["method"], "offline", "{job}");
    // Each attempt asked the model and sent its invalid replies back twice.
    assert_eq!(job["llm_usage"]["calls"], 6, "{job}");
}
