//! A session's history on every backend of the conformance runs: its state at any event,
//! forks, rewinds (native and ADK's), and parent sessions.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, client_with_key, id_of, json_of, problem_of, without_model};

async fn session(app: &TestApp, body: Value) -> String {
    id_of(&json_of(app.post("/api/v1/sessions", &body).await, StatusCode::CREATED).await)
}

async fn append(app: &TestApp, session_id: &str, content: &str, state_delta: Value) {
    let body = json!({"author": "user", "content": content, "invocation_id": format!("inv-{content}"),
                      "actions": {"state_delta": state_delta}});
    app.append(session_id, &body).await;
}

async fn state_at(app: &TestApp, session_id: &str, at_seq: i64) -> Value {
    let path = format!("/api/v1/sessions/{session_id}/state?at_seq={at_seq}");
    let answer = json_of(app.get(&path).await, StatusCode::OK).await;
    assert_eq!(answer["at_seq"], at_seq, "{answer}");
    answer["state"].clone()
}

async fn events(app: &TestApp, session_id: &str) -> Vec<Value> {
    let path = format!("/api/v1/sessions/{session_id}/events?limit=1000");
    json_of(app.get(&path).await, StatusCode::OK).await["events"].as_array().unwrap().clone()
}

async fn get_session(app: &TestApp, session_id: &str) -> Value {
    json_of(app.get(&format!("/api/v1/sessions/{session_id}?include_events=false")).await, StatusCode::OK).await
}

/// Events 1..=4 with deltas, and state patches between them: the states after each are known.
async fn history(app: &TestApp) -> String {
    let id = session(app, json!({"user_id": "maria", "state": {"step": 0, "keep": true}})).await;
    append(app, &id, "one", json!({"step": 1, "city": "Berlin"})).await;
    json_of(app.patch_state(&id, &json!({"keep": null, "mood": "curious"})).await, StatusCode::OK).await;
    append(app, &id, "two", json!({"step": 2})).await;
    append(app, &id, "three", json!({"step": 3, "city": "Hamburg", "nested": {"a": 1}})).await;
    json_of(app.patch_state(&id, &json!({"nested": {"b": 2}})).await, StatusCode::OK).await;
    append(app, &id, "four", json!({})).await;
    id
}

#[tokio::test]
async fn the_state_at_any_event_is_rebuilt_from_deltas_and_patches() {
    let app = without_model::spawn_app().await;
    let id = history(&app).await;
    assert_eq!(state_at(&app, &id, 0).await, json!({"step": 0, "keep": true}));
    assert_eq!(state_at(&app, &id, 1).await, json!({"step": 1, "city": "Berlin", "mood": "curious"}));
    assert_eq!(state_at(&app, &id, 2).await, json!({"step": 2, "city": "Berlin", "mood": "curious"}));
    let at_three = json!({"step": 3, "city": "Hamburg", "mood": "curious", "nested": {"a": 1, "b": 2}});
    assert_eq!(state_at(&app, &id, 3).await, at_three);
    assert_eq!(state_at(&app, &id, 4).await, at_three);
    let now = json_of(app.get(&format!("/api/v1/sessions/{id}/state")).await, StatusCode::OK).await;
    assert_eq!(now, json!({"session_id": id, "at_seq": 4, "state": at_three}));
    assert_eq!(get_session(&app, &id).await["state"], at_three);

    for bad in ["at_seq=5", "at_seq=-1", "at_seq=x"] {
        let response = app.get(&format!("/api/v1/sessions/{id}/state?{bad}")).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let missing = format!("/api/v1/sessions/{}/state?at_seq=0", uuid::Uuid::now_v7());
    problem_of(app.get(&missing).await, StatusCode::NOT_FOUND, "session_not_found").await;
}

#[tokio::test]
async fn a_fork_has_the_history_up_to_its_point_and_the_state_as_it_was_there() {
    let app = without_model::spawn_app().await;
    let id = history(&app).await;
    let path = format!("/api/v1/sessions/{id}/fork");
    let fork =
        json_of(app.post(&path, &json!({"at_seq": 2, "metadata": {"branch": "b"}})).await, StatusCode::CREATED).await;
    let fork_id = id_of(&fork);
    assert_ne!(fork_id, id);
    assert_eq!(fork["forked_from"], json!({"session_id": id, "seq": 2}), "{fork}");
    assert_eq!(fork["state"], json!({"step": 2, "city": "Berlin", "mood": "curious"}));
    assert_eq!(fork["metadata"], json!({"branch": "b"}));
    assert_eq!(fork["event_count"], 2);
    assert_eq!(fork["user_id"], "maria");
    let source_events = events(&app, &id).await;
    let fork_events = events(&app, &fork_id).await;
    assert_eq!(fork_events.len(), 2);
    for (copy, original) in fork_events.iter().zip(&source_events) {
        assert_ne!(copy["id"], original["id"], "copies get ids of their own");
        assert_eq!(copy["session_id"], fork_id);
        for field in ["seq", "content", "author", "invocation_id", "token_count", "actions", "timestamp"] {
            assert_eq!(copy[field], original[field], "{field}");
        }
    }
    let tokens: i64 = fork_events.iter().map(|event| event["token_count"].as_i64().unwrap()).sum();
    assert_eq!(fork["token_count"], tokens);
    // The fork's own history rebuilds as the source's did, and it goes on by itself.
    assert_eq!(state_at(&app, &fork_id, 1).await, json!({"step": 1, "city": "Berlin", "mood": "curious"}));
    append(&app, &fork_id, "fork-three", json!({"step": 30})).await;
    assert_eq!(get_session(&app, &fork_id).await["event_count"], 3);
    assert_eq!(get_session(&app, &id).await["event_count"], 4, "the source is unchanged");
    assert_eq!(events(&app, &id).await, source_events);

    // By invocation: through its last event; by default: all of it, with the source's metadata.
    let by_invocation =
        json_of(app.post(&path, &json!({"invocation_id": "inv-three"})).await, StatusCode::CREATED).await;
    assert_eq!(by_invocation["event_count"], 3);
    assert_eq!(by_invocation["state"]["nested"], json!({"a": 1, "b": 2}));
    let whole = json_of(app.client.post(app.url(&path)).send().await.unwrap(), StatusCode::CREATED).await;
    assert_eq!(whole["event_count"], 4);
    assert_eq!(whole["state"], get_session(&app, &id).await["state"]);
    let empty = json_of(app.post(&path, &json!({"at_seq": 0})).await, StatusCode::CREATED).await;
    assert_eq!(empty["state"], json!({"step": 0, "keep": true}));
    assert_eq!(empty["event_count"], 0);

    // A named fork; the name cannot be taken twice.
    let named = uuid::Uuid::now_v7().to_string();
    let body = json!({"session_id": named, "at_seq": 1});
    assert_eq!(id_of(&json_of(app.post(&path, &body).await, StatusCode::CREATED).await), named);
    problem_of(app.post(&path, &body).await, StatusCode::CONFLICT, "session_exists").await;

    for bad in [
        json!({"at_seq": 5}),
        json!({"at_seq": -1}),
        json!({"at_seq": 1, "invocation_id": "inv-one"}),
        json!({"invocation_id": "no-such-invocation"}),
        json!({"at_seq": "2"}),
        json!({"unknown": 1}),
    ] {
        let response = app.post(&path, &bad).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let missing = format!("/api/v1/sessions/{}/fork", uuid::Uuid::now_v7());
    problem_of(app.post(&missing, &json!({})).await, StatusCode::NOT_FOUND, "session_not_found").await;
}

#[tokio::test]
async fn a_rewind_restores_the_state_and_takes_the_events_out_of_the_context() {
    let app = without_model::spawn_app().await;
    let id = history(&app).await;
    let path = format!("/api/v1/sessions/{id}/rewind");
    let rewound = json_of(app.post(&path, &json!({"to_seq": 1})).await, StatusCode::CREATED).await;
    assert_eq!(rewound["state"], json!({"step": 1, "city": "Berlin", "mood": "curious"}), "{rewound}");
    assert_eq!(rewound["event_count"], 5);
    let all = events(&app, &id).await;
    assert_eq!(all.len(), 5, "nothing is deleted");
    let marker = &all[4];
    assert_eq!(marker["kind"], "rewind", "{marker}");
    assert_eq!(marker["rewind"], json!({"to_seq": 1, "before_invocation_id": "inv-two"}));
    // ADK's delta: what changed, null for what went.
    assert_eq!(marker["actions"]["state_delta"], json!({"step": 1, "city": "Berlin", "nested": null}));
    assert_eq!(state_at(&app, &id, 4).await["step"], 3, "the history before the rewind is kept");
    assert_eq!(state_at(&app, &id, 5).await, rewound["state"]);

    // The context leaves the rewound events out; a new turn follows the rewind.
    append(&app, &id, "two-again", json!({"step": 2})).await;
    let context = json_of(
        app.post(&format!("/api/v1/sessions/{id}/context"), &json!({"budget_tokens": 2000, "memory_top_k": 0})).await,
        StatusCode::OK,
    )
    .await;
    let seqs: Vec<i64> =
        context["events"].as_array().unwrap().iter().map(|e| e["event"]["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 6], "{context}");
    let text = context["text"].as_str().unwrap();
    assert!(!text.contains("three") && text.contains("two-again"), "{text}");

    // ADK's way: before an invocation; a rewind to a rewound point brings its events back.
    let again = json_of(app.post(&path, &json!({"before_invocation_id": "inv-four"})).await, StatusCode::CREATED).await;
    assert_eq!(again["state"]["step"], 3, "{again}");
    let context = json_of(
        app.post(&format!("/api/v1/sessions/{id}/context"), &json!({"budget_tokens": 2000, "memory_top_k": 0})).await,
        StatusCode::OK,
    )
    .await;
    let seqs: Vec<i64> =
        context["events"].as_array().unwrap().iter().map(|e| e["event"]["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3], "{context}");

    for bad in [
        json!({}),
        json!({"to_seq": 7}),
        json!({"to_seq": 8}),
        json!({"to_seq": -1}),
        json!({"to_seq": 1, "before_invocation_id": "inv-one"}),
        json!({"before_invocation_id": "nope"}),
    ] {
        let response = app.post(&path, &bad).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    assert_eq!(events(&app, &id).await.len(), 7, "a refused rewind writes nothing");
}

#[tokio::test]
async fn children_are_listed_under_their_parent_and_deleted_with_it() {
    let app = without_model::spawn_app().await;
    let parent = session(&app, json!({"user_id": "maria"})).await;
    let child = |agent: &str| {
        json!({"user_id": "maria", "agent_id": agent, "parent_session_id": parent,
                                       "scope": {"user_id": "maria", "agent_id": agent}})
    };
    let planner = session(&app, child("planner")).await;
    let searcher = session(&app, child("searcher")).await;
    let grandchild = session(
        &app,
        json!({"user_id": "maria", "parent_session_id": planner, "scope": {"user_id": "maria", "agent_id": "planner"}}),
    )
    .await;
    let unrelated = session(&app, json!({"user_id": "maria"})).await;
    assert_eq!(get_session(&app, &planner).await["parent_session_id"], parent);
    assert_eq!(get_session(&app, &parent).await["parent_session_id"], Value::Null);

    let listed = json_of(app.get(&format!("/api/v1/sessions?parent_session_id={parent}")).await, StatusCode::OK).await;
    let mut ids: Vec<&str> = listed["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = vec![planner.as_str(), searcher.as_str()];
    expected.sort();
    assert_eq!(ids, expected);

    // A parent must be within reach, and its scope within the child's.
    let missing = json!({"user_id": "maria", "parent_session_id": uuid::Uuid::now_v7()});
    problem_of(app.post("/api/v1/sessions", &missing).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    let wider = json!({"user_id": "lena", "parent_session_id": parent});
    problem_of(app.post("/api/v1/sessions", &wider).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let key = json_of(
        app.post(
            "/api/v1/keys",
            &json!({"name": "lena", "permissions": ["SESSION_READ", "SESSION_WRITE"],
                                           "scope": {"user_id": "lena"}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let lena = client_with_key(key["key"].as_str().unwrap());
    let body = json!({"user_id": "lena", "parent_session_id": parent});
    let refused = lena.post(app.url("/api/v1/sessions")).json(&body).send().await.unwrap();
    problem_of(refused, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let theirs = lena.get(app.url(&format!("/api/v1/sessions?parent_session_id={parent}"))).send().await.unwrap();
    assert_eq!(json_of(theirs, StatusCode::OK).await["sessions"], json!([]));
    let bad = app.get("/api/v1/sessions?parent_session_id=not-a-uuid").await;
    assert!(bad.status().is_client_error(), "{}", bad.status());

    // Deleting the parent deletes its descendants, and nothing else.
    assert_eq!(app.delete(&format!("/api/v1/sessions/{parent}")).await.status(), StatusCode::NO_CONTENT);
    for gone in [&parent, &planner, &searcher, &grandchild] {
        let response = app.get(&format!("/api/v1/sessions/{gone}")).await;
        problem_of(response, StatusCode::NOT_FOUND, "session_not_found").await;
    }
    get_session(&app, &unrelated).await;
}

#[tokio::test]
async fn forks_and_rewinds_keep_to_the_credentials_reach() {
    let app = without_model::spawn_app().await;
    let id = history(&app).await;
    let key = json_of(
        app.post(
            "/api/v1/keys",
            &json!({"name": "lena", "permissions": ["SESSION_READ", "SESSION_WRITE"],
                                           "scope": {"user_id": "lena"}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let lena = client_with_key(key["key"].as_str().unwrap());
    for (path, body) in [
        (format!("/api/v1/sessions/{id}/fork"), json!({})),
        (format!("/api/v1/sessions/{id}/rewind"), json!({"to_seq": 1})),
    ] {
        let response = lena.post(app.url(&path)).json(&body).send().await.unwrap();
        problem_of(response, StatusCode::NOT_FOUND, "session_not_found").await;
    }
    let response = lena.get(app.url(&format!("/api/v1/sessions/{id}/state?at_seq=1"))).send().await.unwrap();
    problem_of(response, StatusCode::NOT_FOUND, "session_not_found").await;
    assert_eq!(get_session(&app, &id).await["event_count"], 4, "nothing changed");
}
