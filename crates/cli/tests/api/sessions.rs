//! The sessions API: every endpoint, pagination, merge patch, TTLs, limits, concurrency.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::without_model::{spawn_app, spawn_app_with};
use crate::helpers::{all_events, id_of, json_of, problem_of};

fn timestamp(value: &Value) -> DateTime<Utc> {
    value.as_str().and_then(|text| text.parse().ok()).unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

#[tokio::test]
async fn create_applies_defaults() {
    let app = spawn_app().await;
    let before = Utc::now();
    let session = app.create_session(&json!({"user_id": "u1"})).await;
    assert_eq!(session["user_id"], "u1");
    assert_eq!(session["agent_id"], Value::Null);
    assert_eq!(session["scope"], json!({"user_id": "u1"}));
    assert_eq!(session["state"], json!({}));
    assert_eq!(session["metadata"], json!({}));
    assert_eq!(session["expires_at"], Value::Null);
    assert_eq!(session["event_count"], 0);
    let created_at = timestamp(&session["created_at"]);
    assert!(created_at >= before - chrono::Duration::milliseconds(1) && created_at <= Utc::now());
    assert_eq!(session["created_at"], session["updated_at"]);

    assert_eq!(session["events"], json!([]), "a new session answers with its (empty) events, as a read does");

    let fetched = json_of(app.get(&format!("/api/v1/sessions/{}", id_of(&session))).await, StatusCode::OK).await;
    assert_eq!(fetched, session, "what was created is what is read back, in the same shape");
}

#[tokio::test]
async fn create_keeps_every_given_field() {
    let app = spawn_app().await;
    let body = json!({
        "user_id": "u1",
        "agent_id": "travel-agent",
        "scope": {"user_id": "u1", "app": "travel"},
        "state": {"step": 1, "cart": {"items": ["a"]}},
        "metadata": {"source": "test", "nested": {"deep": [1, 2, null]}},
        "ttl_seconds": 3600
    });
    let session = app.create_session(&body).await;
    for field in ["user_id", "agent_id", "scope", "state", "metadata"] {
        assert_eq!(session[field], body[field], "{field}");
    }
    let lifetime = timestamp(&session["expires_at"]) - timestamp(&session["created_at"]);
    assert_eq!(lifetime.num_seconds(), 3600);

    let expires_at = (Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let session = app.create_session(&json!({"user_id": "u1", "expires_at": expires_at})).await;
    assert_eq!(timestamp(&session["expires_at"]).timestamp(), expires_at.parse::<DateTime<Utc>>().unwrap().timestamp());
}

#[tokio::test]
async fn events_keep_one_order_and_their_fields() {
    let app = spawn_app().await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    let first = app
        .append(
            &session_id,
            &json!({"author": "user", "content": "hello", "invocation_id": "inv-1",
                "timestamp": "2026-01-02T03:04:05.123456Z", "metadata": {"lang": "en"}}),
        )
        .await;
    assert_eq!(first["seq"], 1);
    assert_eq!(first["role"], "user", "role defaults to user");
    assert_eq!(first["content"], "hello");
    assert_eq!(first["invocation_id"], "inv-1");
    assert_eq!(first["timestamp"], "2026-01-02T03:04:05.123456Z");
    assert_eq!(first["metadata"], json!({"lang": "en"}));
    assert_eq!(first["session_id"], session_id.as_str());

    let batch = app
        .append(
            &session_id,
            &json!({"events": [
                {"author": "agent", "role": "assistant", "content": {"text": "hi", "parts": [1, 2]}},
                {"author": "search", "role": "tool", "content": ["result"]},
                {"author": "system", "role": "system", "content": "be brief"}
            ]}),
        )
        .await;
    let seqs: Vec<i64> =
        batch["events"].as_array().unwrap().iter().map(|event| event["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [2, 3, 4]);

    let session = json_of(app.get(&format!("/api/v1/sessions/{session_id}")).await, StatusCode::OK).await;
    assert_eq!(session["event_count"], 4);
    let events = session["events"].as_array().unwrap();
    assert_eq!(events[0], first);
    assert_eq!(&events[1..], batch["events"].as_array().unwrap().as_slice());
    assert_eq!(events[1]["content"], json!({"text": "hi", "parts": [1, 2]}));
    assert!(timestamp(&session["updated_at"]) > timestamp(&session["created_at"]));

    let without =
        json_of(app.get(&format!("/api/v1/sessions/{session_id}?include_events=false")).await, StatusCode::OK).await;
    assert!(without.get("events").is_none(), "{without}");
    assert_eq!(without["event_count"], 4);
}

#[tokio::test]
async fn events_page_in_append_order() {
    let app = spawn_app().await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    let events: Vec<Value> = (0..25).map(|n| json!({"author": "user", "content": format!("m{n}")})).collect();
    app.append(&session_id, &json!({"events": events})).await;

    let mut contents = Vec::new();
    let mut cursor: Option<String> = None;
    let mut n_pages = 0;
    loop {
        let query = cursor.as_ref().map_or(String::new(), |cursor| format!("&cursor={cursor}"));
        let page =
            json_of(app.get(&format!("/api/v1/sessions/{session_id}/events?limit=10{query}")).await, StatusCode::OK)
                .await;
        n_pages += 1;
        contents.extend(
            page["events"].as_array().unwrap().iter().map(|event| event["content"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(n_pages, 3);
    assert_eq!(contents, (0..25).map(|n| format!("m{n}")).collect::<Vec<_>>());

    let default_page = json_of(app.get(&format!("/api/v1/sessions/{session_id}/events")).await, StatusCode::OK).await;
    assert_eq!(default_page["events"].as_array().unwrap().len(), 25);
    assert_eq!(default_page["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_session_read_holds_its_first_thousand_events_and_a_cursor_for_the_rest() {
    let app = spawn_app().await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    for batch in 0..11 {
        let events: Vec<Value> =
            (0..100).map(|n| json!({"author": "u", "content": format!("m{}", batch * 100 + n)})).collect();
        app.append(&session_id, &json!({"events": events})).await;
    }
    let session = json_of(app.get(&format!("/api/v1/sessions/{session_id}")).await, StatusCode::OK).await;
    assert_eq!(session["event_count"], 1100);
    assert_eq!(session["events"].as_array().unwrap().len(), 1000);
    let cursor = session["events_next_cursor"].as_str().expect("a cursor for the rest");
    let rest =
        json_of(app.get(&format!("/api/v1/sessions/{session_id}/events?cursor={cursor}")).await, StatusCode::OK).await;
    let rest = rest["events"].as_array().unwrap();
    assert_eq!(rest.len(), 100);
    assert_eq!(rest[0]["seq"], 1001);
    assert_eq!(rest[99]["content"], "m1099");

    let small = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    app.append(&small, &json!({"author": "u", "content": "only"})).await;
    let session = json_of(app.get(&format!("/api/v1/sessions/{small}")).await, StatusCode::OK).await;
    assert!(session.get("events_next_cursor").is_none(), "{session}");
}

#[tokio::test]
async fn lists_are_newest_first_filtered_and_stable_across_pages() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for n in 0..7 {
        created
            .push(id_of(&app.create_session(&json!({"user_id": "lister", "agent_id": format!("a{}", n % 2)})).await));
    }
    app.create_session(&json!({"user_id": "someone-else"})).await;

    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = cursor.as_ref().map_or(String::new(), |cursor| format!("&cursor={cursor}"));
        let page =
            json_of(app.get(&format!("/api/v1/sessions?user_id=lister&limit=3{query}")).await, StatusCode::OK).await;
        // A session created between pages is newer than the cursor: it must not shift them.
        app.create_session(&json!({"user_id": "lister"})).await;
        listed.extend(page["sessions"].as_array().unwrap().iter().map(|session| {
            assert!(session.get("events").is_none(), "lists omit events");
            id_of(session)
        }));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(listed, created);

    let by_agent =
        json_of(app.get("/api/v1/sessions?user_id=lister&agent_id=a1&limit=100").await, StatusCode::OK).await;
    let agents: HashSet<&str> =
        by_agent["sessions"].as_array().unwrap().iter().map(|s| s["agent_id"].as_str().unwrap()).collect();
    assert_eq!(by_agent["sessions"].as_array().unwrap().len(), 3);
    assert_eq!(agents, HashSet::from(["a1"]));

    let everyone = json_of(app.get("/api/v1/sessions?limit=100").await, StatusCode::OK).await;
    assert_eq!(everyone["sessions"].as_array().unwrap().len(), 7 + 1 + 3);
    let default_page = json_of(app.get("/api/v1/sessions").await, StatusCode::OK).await;
    assert_eq!(default_page["sessions"].as_array().unwrap().len(), 11);
}

#[tokio::test]
async fn state_takes_json_merge_patches() {
    let app = spawn_app().await;
    let session_id = id_of(
        &app.create_session(&json!({"user_id": "u1", "state": {"a": 1, "keep": true, "nested": {"x": 1, "y": 2}}}))
            .await,
    );
    let patched = json_of(
        app.patch_state(&session_id, &json!({"a": null, "b": [1, 2], "nested": {"x": null, "z": {"deep": 1}}})).await,
        StatusCode::OK,
    )
    .await;
    let expect = json!({"keep": true, "b": [1, 2], "nested": {"y": 2, "z": {"deep": 1}}});
    assert_eq!(patched["state"], expect);
    let fetched = json_of(app.get(&format!("/api/v1/sessions/{session_id}")).await, StatusCode::OK).await;
    assert_eq!(fetched["state"], expect);

    // Plain application/json is accepted too.
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/sessions/{session_id}/state")))
        .json(&json!({"keep": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(response, StatusCode::OK).await["state"],
        json!({"b": [1, 2], "nested": {"y": 2, "z": {"deep": 1}}})
    );

    let deep = (0..40).fold(json!(1), |inner, _| json!({"k": inner}));
    let problem = problem_of(
        app.patch_state(&session_id, &json!({"deep": deep})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["field"], "state");
    for not_an_object in [json!([1]), json!("x"), json!(null), json!(3)] {
        let problem = problem_of(
            app.patch_state(&session_id, &not_an_object).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["field"], "body");
    }
    let unknown = "0190b8a4-0000-7000-8000-000000000000";
    problem_of(app.patch_state(unknown, &json!({"a": 1})).await, StatusCode::NOT_FOUND, "session_not_found").await;
}

#[tokio::test]
async fn limits_are_enforced_and_change_nothing() {
    let app = spawn_app_with(|settings| {
        settings.sessions.max_state_bytes = 100;
        settings.sessions.max_events_per_request = 3;
        settings.limits.max_body_bytes = 4096;
    })
    .await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "u1", "state": {"a": 1}})).await);

    let big = "x".repeat(200);
    let problem = problem_of(
        app.patch_state(&session_id, &json!({"big": big})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit_exceeded",
    )
    .await;
    assert_eq!(problem["field"], "state");
    let problem = problem_of(
        app.post("/api/v1/sessions", &json!({"user_id": "u2", "state": {"big": big}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit_exceeded",
    )
    .await;
    assert_eq!(problem["field"], "state");

    let four: Vec<Value> = (0..4).map(|n| json!({"author": "u", "content": n.to_string()})).collect();
    let problem = problem_of(
        app.post(&format!("/api/v1/sessions/{session_id}/events"), &json!({"events": four})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit_exceeded",
    )
    .await;
    assert_eq!(problem["field"], "events");
    problem_of(
        app.post(&format!("/api/v1/sessions/{session_id}/events"), &json!({"events": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let huge = json!({"author": "u", "content": "y".repeat(5000)});
    problem_of(
        app.post(&format!("/api/v1/sessions/{session_id}/events"), &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;

    let session = json_of(app.get(&format!("/api/v1/sessions/{session_id}")).await, StatusCode::OK).await;
    assert_eq!(session["state"], json!({"a": 1}));
    assert_eq!(session["event_count"], 0);
    let all = json_of(app.get("/api/v1/sessions").await, StatusCode::OK).await;
    assert_eq!(all["sessions"].as_array().unwrap().len(), 1, "no session was created by a rejected request");
}

#[tokio::test]
async fn delete_removes_the_session_and_its_events() {
    let app = spawn_app().await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    app.append(&session_id, &json!({"author": "u", "content": "x"})).await;
    let response = app.delete(&format!("/api/v1/sessions/{session_id}")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for path in [format!("/api/v1/sessions/{session_id}"), format!("/api/v1/sessions/{session_id}/events")] {
        problem_of(app.get(&path).await, StatusCode::NOT_FOUND, "session_not_found").await;
    }
    problem_of(app.delete(&format!("/api/v1/sessions/{session_id}")).await, StatusCode::NOT_FOUND, "session_not_found")
        .await;
    problem_of(
        app.post(&format!("/api/v1/sessions/{session_id}/events"), &json!({"author": "u", "content": "x"})).await,
        StatusCode::NOT_FOUND,
        "session_not_found",
    )
    .await;
}

#[tokio::test]
async fn expired_sessions_read_as_not_found_everywhere() {
    let app = spawn_app().await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "ttl-user", "ttl_seconds": 1})).await);
    let keeper_id = id_of(&app.create_session(&json!({"user_id": "ttl-user"})).await);
    app.append(&session_id, &json!({"author": "u", "content": "x"})).await;
    app.clock.advance(Duration::from_millis(1100));

    let session_path = format!("/api/v1/sessions/{session_id}");
    problem_of(app.get(&session_path).await, StatusCode::NOT_FOUND, "session_not_found").await;
    problem_of(app.get(&format!("{session_path}/events")).await, StatusCode::NOT_FOUND, "session_not_found").await;
    problem_of(
        app.post(&format!("{session_path}/events"), &json!({"author": "u", "content": "x"})).await,
        StatusCode::NOT_FOUND,
        "session_not_found",
    )
    .await;
    problem_of(app.patch_state(&session_id, &json!({"a": 1})).await, StatusCode::NOT_FOUND, "session_not_found").await;
    problem_of(app.delete(&session_path).await, StatusCode::NOT_FOUND, "session_not_found").await;
    let listed = json_of(app.get("/api/v1/sessions?user_id=ttl-user").await, StatusCode::OK).await;
    let ids: Vec<String> = listed["sessions"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(ids, [keeper_id]);
}

#[tokio::test]
async fn a_background_task_purges_expired_sessions() {
    let app = spawn_app_with(|settings| settings.sessions.purge_interval_seconds = 1).await;
    for _ in 0..3 {
        let session_id = id_of(&app.create_session(&json!({"user_id": "u1", "ttl_seconds": 1})).await);
        app.append(&session_id, &json!({"author": "u", "content": "x"})).await;
    }
    app.create_session(&json!({"user_id": "u1"})).await;
    let purged_total = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|line| line.starts_with("sessions_purged_total"))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    let mut purged = 0;
    for _ in 0..100 {
        purged = purged_total(&app.get("/metrics").await.text().await.unwrap());
        if purged >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(purged, 3, "the three expired sessions, and only they, were purged");
    let listed = json_of(app.get("/api/v1/sessions").await, StatusCode::OK).await;
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_default_ttl_applies_when_none_is_given() {
    let app = spawn_app_with(|settings| settings.sessions.default_ttl_seconds = Some(600)).await;
    let session = app.create_session(&json!({"user_id": "u1"})).await;
    let lifetime = timestamp(&session["expires_at"]) - timestamp(&session["created_at"]);
    assert_eq!(lifetime.num_seconds(), 600);
    let session = app.create_session(&json!({"user_id": "u1", "ttl_seconds": 5})).await;
    assert_eq!((timestamp(&session["expires_at"]) - timestamp(&session["created_at"])).num_seconds(), 5);
}

/// 50 clients append 100 events each to one session at once: all 5,000 are there, once
/// each, numbered 1..=5000, and each client's events keep the order it sent them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_lose_nothing_and_keep_one_order() {
    const CLIENTS: usize = 50;
    const APPENDS: usize = 100;
    let app = spawn_app().await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    let url = app.url(&format!("/api/v1/sessions/{session_id}/events"));
    let clients = (0..CLIENTS).map(|client_idx| {
        let client = app.client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(APPENDS);
            for n in 0..APPENDS {
                let body = json!({"author": format!("client-{client_idx}"), "content": format!("{client_idx}:{n}")});
                let response = client.post(&url).json(&body).send().await.expect("request sent");
                seqs.push(json_of(response, StatusCode::CREATED).await["seq"].as_i64().unwrap());
            }
            seqs
        })
    });
    let acked: Vec<Vec<i64>> = futures::future::join_all(clients).await.into_iter().map(Result::unwrap).collect();

    let mut all_seqs: Vec<i64> = acked.iter().flatten().copied().collect();
    all_seqs.sort_unstable();
    assert_eq!(all_seqs, (1..=(CLIENTS * APPENDS) as i64).collect::<Vec<_>>());

    let events = all_events(&app.client, &app.address, &session_id).await;
    assert_eq!(events.len(), CLIENTS * APPENDS);
    let mut next_n = vec![0usize; CLIENTS];
    for (idx, event) in events.iter().enumerate() {
        assert_eq!(event["seq"].as_i64().unwrap(), idx as i64 + 1);
        let (client, n) = event["content"].as_str().unwrap().split_once(':').unwrap();
        let (client, n): (usize, usize) = (client.parse().unwrap(), n.parse().unwrap());
        assert_eq!(n, next_n[client], "client {client}'s events are out of order");
        next_n[client] += 1;
    }
    assert!(next_n.iter().all(|n| *n == APPENDS));
}
