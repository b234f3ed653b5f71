//! The Agent Engine surface at the HTTP level, on every backend of the conformance runs: both
//! path forms, Google's error bodies and statuses, the credentials Google's clients send,
//! engines partitioning an org, and each resource seen through the native API too. Google's
//! own clients drive the same surface in `integrations/adk/tests` (scripts/adk-tests.sh).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, spawn_app, url_encode, without_model};

const PROJECT: &str = "/v1beta1/projects/p1/locations/us-central1/reasoningEngines";
const EXPRESS: &str = "/v1beta1/reasoningEngines";

/// A Google error body with `status` and Google's `name` for it.
async fn google_error(response: reqwest::Response, status: StatusCode, name: &str) -> Value {
    let content_type =
        response.headers().get("content-type").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let body = json_of(response, status).await;
    assert_eq!(content_type, "application/json", "{body}");
    assert_eq!(body["error"]["code"], status.as_u16(), "{body}");
    assert_eq!(body["error"]["status"], name, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|message| !message.is_empty()), "{body}");
    body
}

async fn patch(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client.patch(app.url(path)).json(body).send().await.expect("request sent")
}

/// Polls an operation until it is done.
async fn finished(app: &TestApp, operation: &Value) -> Value {
    let name = operation["name"].as_str().expect("an operation name").to_owned();
    for _ in 0..600 {
        let polled = json_of(app.get(&format!("/v1beta1/{name}")).await, StatusCode::OK).await;
        if polled["done"] == true {
            return polled;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("operation {name} did not finish");
}

fn last_segment(name: &Value) -> String {
    name.as_str().expect("a name").rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn sessions_round_trip_through_both_path_forms_and_the_native_api() {
    let app = without_model::spawn_app().await;
    let created = json_of(
        app.post(
            &format!("{PROJECT}/default/sessions?sessionId=s-1"),
            &json!({"userId": "u1", "sessionState": {"cart": {"a": 1}}, "displayName": "trip", "labels": {"k": "v"}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(created["done"], true, "{created}");
    let session = &created["response"];
    assert_eq!(session["name"], "projects/p1/locations/us-central1/reasoningEngines/default/sessions/s-1");
    assert_eq!(
        (&session["userId"], &session["displayName"], &session["labels"]),
        (&json!("u1"), &json!("trip"), &json!({"k": "v"}))
    );
    assert!(session["updateTime"].as_str().is_some(), "{session}");
    // The same session in the express form, named in that form.
    let read = json_of(app.get(&format!("{EXPRESS}/default/sessions/s-1")).await, StatusCode::OK).await;
    assert_eq!(read["name"], "reasoningEngines/default/sessions/s-1");
    assert_eq!(read["sessionState"], json!({"cart": {"a": 1}}));

    // ADK's append: snake_case inside, the raw event kept as sent, the state delta merged
    // (each key replaced whole).
    let raw = json!({"id": "e-1", "author": "user", "longRunningToolIds": [], "timestamp": 1.5e9});
    let appended = app
        .post(
            &format!("{EXPRESS}/default/sessions/s-1:appendEvent"),
            &json!({
                "author": "user", "invocationId": "inv-1", "timestamp": "2026-12-05T10:00:00+00:00",
                "content": {"role": "user", "parts": [{"text": "I live in Lisbon"}]},
                "actions": {"state_delta": {"cart": {"b": 2}, "user:name": "Ana"}},
                "eventMetadata": {"turn_complete": true}, "rawEvent": raw,
            }),
        )
        .await;
    assert_eq!(json_of(appended, StatusCode::OK).await, json!({}));
    let read = json_of(app.get(&format!("{EXPRESS}/default/sessions/s-1")).await, StatusCode::OK).await;
    assert_eq!(read["sessionState"], json!({"cart": {"b": 2}, "user:name": "Ana"}));
    let events = json_of(app.get(&format!("{EXPRESS}/default/sessions/s-1/events")).await, StatusCode::OK).await;
    let event = &events["sessionEvents"][0];
    assert_eq!((&event["rawEvent"], &event["invocationId"], &event["author"]), (&raw, &json!("inv-1"), &json!("user")));
    assert_eq!(event["actions"]["state_delta"]["user:name"], "Ana");
    assert!(events.get("nextPageToken").is_none(), "{events}");
    let later = app
        .get(&format!(
            "{EXPRESS}/default/sessions/s-1/events?filter=timestamp%3E%3D%222026-12-05T10%3A00%3A01%2B00%3A00%22"
        ))
        .await;
    assert_eq!(json_of(later, StatusCode::OK).await["sessionEvents"], json!([]));

    // The native API reads the same record: the text, the state, the id the client chose.
    let listed = json_of(app.get("/api/v1/sessions?user_id=u1").await, StatusCode::OK).await;
    let native = &listed["sessions"][0];
    assert_eq!(native["metadata"]["agent_engine"]["session_id"], "s-1");
    assert_eq!(native["state"]["user:name"], "Ana");
    let native_id = native["id"].as_str().unwrap();
    let native_events = json_of(app.get(&format!("/api/v1/sessions/{native_id}/events")).await, StatusCode::OK).await;
    assert_eq!(native_events["events"][0]["content"], "I live in Lisbon");

    // Lists, patches, deletes.
    let sessions =
        json_of(app.get(&format!("{PROJECT}/default/sessions?filter=user_id%3D%22u1%22")).await, StatusCode::OK).await;
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 1);
    let others =
        json_of(app.get(&format!("{PROJECT}/default/sessions?filter=user_id%3D%22u2%22")).await, StatusCode::OK).await;
    assert_eq!(others["sessions"], json!([]));
    let patched = patch(
        &app,
        &format!("{PROJECT}/default/sessions/s-1?updateMask=session_state,displayName"),
        &json!({"sessionState": {"x": 1}, "displayName": "renamed"}),
    )
    .await;
    let patched = json_of(patched, StatusCode::OK).await;
    assert_eq!(
        (&patched["sessionState"], &patched["displayName"], &patched["labels"]),
        (&json!({"x": 1}), &json!("renamed"), &json!({"k": "v"}))
    );
    let deleted = json_of(app.delete(&format!("{PROJECT}/default/sessions/s-1")).await, StatusCode::OK).await;
    assert_eq!(deleted["done"], true);
    google_error(app.get(&format!("{PROJECT}/default/sessions/s-1")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn errors_are_google_error_bodies() {
    let app = without_model::spawn_app().await;
    let sessions = format!("{PROJECT}/default/sessions");
    google_error(app.post(&sessions, &json!({"userId": 7})).await, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT").await;
    google_error(
        app.post(&sessions, &json!({"userId": "u1", "bogus": 1})).await,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    )
    .await;
    google_error(app.post(&sessions, &json!({})).await, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT").await;
    google_error(
        app.post(&format!("{sessions}?sessionId=a.b"), &json!({"userId": "u1"})).await,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    )
    .await;
    google_error(app.get(&format!("{sessions}?bogus=1")).await, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT").await;
    google_error(app.get(&format!("{sessions}?filter=user_id%3D")).await, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
        .await;
    google_error(
        app.get(&format!("{PROJECT}/bad%20engine/sessions")).await,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    )
    .await;
    google_error(app.get(&format!("{sessions}/missing")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    google_error(app.get(&format!("{PROJECT}/default/widgets")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    google_error(app.delete(&format!("{PROJECT}/default/memories:retrieve")).await, StatusCode::NOT_FOUND, "NOT_FOUND")
        .await;
    app.post(&format!("{sessions}?sessionId=twice"), &json!({"userId": "u1"})).await;
    let again = app.post(&format!("{sessions}?sessionId=twice"), &json!({"userId": "u1"})).await;
    google_error(again, StatusCode::CONFLICT, "ALREADY_EXISTS").await;
    let profiles = format!("{PROJECT}/default/memories:retrieveProfiles");
    google_error(app.post(&profiles, &json!({})).await, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT").await;
    google_error(
        app.post(&profiles, &json!({"scope": {"user_id": "u1"}, "bogus": 1})).await,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    )
    .await;
    google_error(app.post(&profiles, &json!({"scope": {}})).await, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT").await;
    let anonymous = reqwest::Client::new().get(app.url(&sessions)).send().await.unwrap();
    google_error(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let not_json =
        app.client.post(app.url(&sessions)).header("content-type", "text/plain").body("{}").send().await.unwrap();
    google_error(not_json, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT").await;
}

#[tokio::test]
async fn google_clients_credentials_are_accepted() {
    let app = without_model::spawn_app().await;
    let path = app.url(&format!("{EXPRESS}/default/sessions"));
    let client = reqwest::Client::new();
    let by_goog_key = client.get(&path).header("x-goog-api-key", &app.admin_key).send().await.unwrap();
    assert_eq!(by_goog_key.status(), StatusCode::OK);
    let by_bearer = client.get(&path).bearer_auth(&app.admin_key).send().await.unwrap();
    assert_eq!(by_bearer.status(), StatusCode::OK);
    // The native API takes them too; two credentials at once are refused.
    let native = client.get(app.url("/api/v1/sessions")).bearer_auth(&app.admin_key).send().await.unwrap();
    assert_eq!(native.status(), StatusCode::OK);
    let both =
        client.get(&path).header("x-goog-api-key", &app.admin_key).bearer_auth(&app.admin_key).send().await.unwrap();
    google_error(both, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT").await;
    let wrong = client.get(&path).bearer_auth("ck_not-a-key").send().await.unwrap();
    google_error(wrong, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn engines_partition_an_org_and_x_engine_id_selects_one_natively() {
    let app = without_model::spawn_app().await;
    let create = |engine: &str| format!("{PROJECT}/{engine}/memories?memoryId=m-1");
    let memory = json!({"fact": "User likes tea", "scope": {"user_id": "u1"}});
    json_of(app.post(&create("agent-a"), &memory).await, StatusCode::OK).await;
    // The same id in another engine is another memory.
    json_of(
        app.post(&create("agent-b"), &json!({"fact": "User likes coffee", "scope": {"user_id": "u1"}})).await,
        StatusCode::OK,
    )
    .await;
    let in_a = json_of(app.get(&format!("{PROJECT}/agent-a/memories/m-1")).await, StatusCode::OK).await;
    let in_b = json_of(app.get(&format!("{PROJECT}/agent-b/memories/m-1")).await, StatusCode::OK).await;
    assert_eq!((in_a["fact"].as_str(), in_b["fact"].as_str()), (Some("User likes tea"), Some("User likes coffee")));
    google_error(app.get(&format!("{PROJECT}/default/memories/m-1")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let scope = "%7B%22user_id%22%3A%22u1%22%7D";
    let native_default = json_of(app.get(&format!("/api/v1/memories?scope={scope}")).await, StatusCode::OK).await;
    assert_eq!(native_default["memories"], json!([]));
    let native_a = app
        .client
        .get(app.url(&format!("/api/v1/memories?scope={scope}")))
        .header("x-engine-id", "agent-a")
        .send()
        .await
        .unwrap();
    let native_a = json_of(native_a, StatusCode::OK).await;
    assert_eq!(native_a["memories"][0]["fact"], "User likes tea");
    let bad = app
        .client
        .get(app.url(&format!("/api/v1/memories?scope={scope}")))
        .header("x-engine-id", "a/b")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A native session in the default engine is the Agent Engine `default` engine's.
    let native = app.create_session(&json!({"user_id": "u1"})).await;
    let id = native["id"].as_str().unwrap();
    let read = json_of(app.get(&format!("{EXPRESS}/default/sessions/{id}")).await, StatusCode::OK).await;
    assert_eq!(read["userId"], "u1");
    google_error(app.get(&format!("{EXPRESS}/agent-a/sessions/{id}")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn memories_have_revisions_rollbacks_filters_and_purges() {
    let app = without_model::spawn_app().await;
    let memories = format!("{PROJECT}/default/memories");
    let body = json!({
        "fact": "User is allergic to peanuts", "scope": {"user_id": "u9", "app_name": "app"},
        "topics": [{"managed_memory_topic": "USER_PERSONAL_INFO"}, {"customMemoryTopicLabel": "health"}],
        "metadata": {"source": {"string_value": "chat"}, "rank": {"doubleValue": 2}}, "displayName": "allergy",
    });
    let created = json_of(app.post(&format!("{memories}?memoryId=allergy"), &body).await, StatusCode::OK).await;
    let memory = &created["response"];
    assert_eq!(memory["name"], format!("{}/allergy", &memories["/v1beta1/".len()..]));
    assert_eq!(
        memory["topics"],
        json!([{"managedMemoryTopic": "USER_PERSONAL_INFO"}, {"customMemoryTopicLabel": "health"}])
    );
    assert_eq!(memory["metadata"], json!({"source": {"stringValue": "chat"}, "rank": {"doubleValue": 2.0}}));
    json_of(
        app.post(&memories, &json!({"fact": "User likes coffee", "scope": {"user_id": "u8"}})).await,
        StatusCode::OK,
    )
    .await;

    // A profile per scope (exactly the scope), under ContextIQ's schema id; `schemaIds` selects.
    let profiles = format!("{memories}:retrieveProfiles");
    let scope = json!({"user_id": "u9", "app_name": "app"});
    let profile = json_of(app.post(&profiles, &json!({"scope": scope})).await, StatusCode::OK).await;
    let expected = json!({"profiles": {"contextiq-profile": {
        "schemaId": "contextiq-profile", "profile": {"allergy:peanuts": "peanuts"}}}});
    assert_eq!(profile, expected);
    let selected = json!({"scope": scope, "schema_ids": ["contextiq-profile"]});
    assert_eq!(json_of(app.post(&profiles, &selected).await, StatusCode::OK).await, expected);
    let other = json!({"scope": scope, "schemaIds": ["elsewhere"]});
    assert_eq!(json_of(app.post(&profiles, &other).await, StatusCode::OK).await, json!({"profiles": {}}));
    let none = json!({"scope": {"user_id": "u9"}});
    assert_eq!(json_of(app.post(&profiles, &none).await, StatusCode::OK).await, json!({"profiles": {}}));

    let list = |filter: &str| {
        let path = format!("{memories}?filter={}", url_encode(filter));
        let app = &app;
        async move { json_of(app.get(&path).await, StatusCode::OK).await["memories"].as_array().unwrap().len() }
    };
    assert_eq!(list(r#"scope.user_id="u9""#).await, 1);
    assert_eq!(list(r#"fact:"coffee" OR metadata.rank>1"#).await, 2);
    assert_eq!(list(r#"topics.customMemoryTopicLabel="health""#).await, 1);
    // `said_time`, ContextIQ's own field: when a memory was said (here, when it was stored).
    let allergy_said = memory["createTime"].as_str().unwrap();
    let facts = |filter: String, body: Value| {
        let (app, path) = (&app, format!("{memories}:retrieve"));
        async move {
            let mut body = body;
            body["filter"] = json!(filter);
            let retrieved = json_of(app.post(&path, &body).await, StatusCode::OK).await;
            let retrieved = retrieved["retrievedMemories"].as_array().unwrap().clone();
            retrieved.iter().map(|found| found["memory"]["fact"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(&format!(r#"said_time>"{allergy_said}""#)).await, 1);
    assert_eq!(list(&format!(r#"said_time<="{allergy_said}" AND fact:"peanuts""#)).await, 1);
    assert_eq!(list(&format!(r#"said_time<"{allergy_said}""#)).await, 0);
    let coffee_scope = json!({"scope": {"user_id": "u8"}});
    let searched = json!({"scope": {"user_id": "u8"}, "similaritySearchParams": {"searchQuery": "coffee"}});
    assert_eq!(facts(format!(r#"said_time>"{allergy_said}""#), coffee_scope.clone()).await, ["User likes coffee"]);
    assert_eq!(facts(format!(r#"said_time>"{allergy_said}""#), searched.clone()).await, ["User likes coffee"]);
    assert!(facts(format!(r#"said_time<="{allergy_said}""#), searched).await.is_empty());

    let patched = patch(
        &app,
        &format!("{memories}/allergy?updateMask=fact"),
        &json!({"fact": "User is allergic to peanuts and cashews"}),
    )
    .await;
    assert_eq!(json_of(patched, StatusCode::OK).await["response"]["fact"], "User is allergic to peanuts and cashews");
    let revisions = json_of(app.get(&format!("{memories}/allergy/revisions")).await, StatusCode::OK).await;
    let revisions = revisions["memoryRevisions"].as_array().unwrap().clone();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    assert_eq!(revisions[1]["fact"], "User is allergic to peanuts", "oldest last");
    let first = last_segment(&revisions[1]["name"]);
    let one = json_of(app.get(&format!("{memories}/allergy/revisions/{first}")).await, StatusCode::OK).await;
    assert_eq!(one["fact"], "User is allergic to peanuts");
    let rolled = app.post(&format!("{memories}/allergy:rollback"), &json!({"targetRevisionId": first})).await;
    assert_eq!(json_of(rolled, StatusCode::OK).await["done"], true);
    let read = json_of(app.get(&format!("{memories}/allergy")).await, StatusCode::OK).await;
    assert_eq!(read["fact"], "User is allergic to peanuts");

    // A dry run counts and erases nothing; a forced purge erases.
    let dry = json_of(
        app.post(&format!("{memories}:purge"), &json!({"filter": r#"scope.user_id="u9""#, "force": false})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!((&dry["done"], &dry["response"]["purgeCount"]), (&json!(true), &json!("1")));
    json_of(app.get(&format!("{memories}/allergy")).await, StatusCode::OK).await;
    let groups = json!({"filterGroups": [{"filters": [{"key": "source", "op": "EQUAL", "value": {"stringValue": "chat"}}]}], "force": true});
    let forced = json_of(app.post(&format!("{memories}:purge"), &groups).await, StatusCode::OK).await;
    assert_eq!(forced["response"]["purgeCount"], "1");
    google_error(app.get(&format!("{memories}/allergy")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let polled =
        json_of(app.get(&format!("/v1beta1/{}", forced["name"].as_str().unwrap())).await, StatusCode::OK).await;
    assert_eq!(polled["response"]["purgeCount"], "1");
    google_error(
        app.post(&format!("{memories}:purge"), &json!({"force": true})).await,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    )
    .await;
}

#[tokio::test]
async fn generation_is_a_job_operation_and_retrieval_finds_its_memories() {
    let app = spawn_app().await;
    let engine = format!("{PROJECT}/default");
    let operation = json_of(
        app.post(
            &format!("{engine}/memories:generate"),
            &json!({
                "directContentsSource": {"events": [{"content": {"role": "user", "parts": [{"text": "I live in Lisbon and I am allergic to peanuts"}]}}]},
                "scope": {"user_id": "u1", "app_name": "app"},
            }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(operation["done"], false, "{operation}");
    let done = finished(&app, &operation).await;
    let generated = done["response"]["generatedMemories"].as_array().unwrap();
    assert!(!generated.is_empty() && generated.iter().all(|item| item["action"] == "CREATED"), "{done}");

    let retrieve = |body: Value| {
        let path = format!("{engine}/memories:retrieve");
        let app = &app;
        async move { json_of(app.post(&path, &body).await, StatusCode::OK).await }
    };
    let scope = json!({"user_id": "u1", "app_name": "app"});
    let found =
        retrieve(json!({"scope": scope, "similaritySearchParams": {"search_query": "where does the user live?"}}))
            .await;
    let found = found["retrievedMemories"].as_array().unwrap().clone();
    assert!(found[0]["memory"]["fact"].as_str().unwrap().contains("Lisbon"), "{found:?}");
    assert!(found[0]["distance"].is_number());
    assert!(found.len() <= 3);
    let simple = retrieve(json!({"scope": scope, "simpleRetrievalParams": {"page_size": 10}})).await;
    assert_eq!(simple["retrievedMemories"].as_array().unwrap().len(), generated.len());
    assert!(simple.get("nextPageToken").is_none());
    let profiles_only = retrieve(
        json!({"scope": scope, "similaritySearchParams": {"search_query": "x"}, "memoryTypes": ["STRUCTURED_PROFILE"]}),
    )
    .await;
    assert_eq!(profiles_only["retrievedMemories"], json!([]));
    // Another scope sees nothing.
    let other =
        retrieve(json!({"scope": {"user_id": "u1"}, "similaritySearchParams": {"search_query": "Lisbon"}})).await;
    assert_eq!(other["retrievedMemories"], json!([]));

    // The same records through the native API.
    let scope_query = url_encode(&scope.to_string());
    let native = json_of(app.get(&format!("/api/v1/memories?scope={scope_query}")).await, StatusCode::OK).await;
    assert_eq!(native["memories"].as_array().unwrap().len(), generated.len());

    // From a session, through its full name.
    json_of(app.post(&format!("{engine}/sessions?sessionId=chat-1"), &json!({"userId": "u2"})).await, StatusCode::OK)
        .await;
    let event = json!({"author": "user", "invocationId": "i", "timestamp": "2026-12-05T10:00:00Z",
        "content": {"role": "user", "parts": [{"text": "My favourite colour is green"}]}});
    json_of(app.post(&format!("{engine}/sessions/chat-1:appendEvent"), &event).await, StatusCode::OK).await;
    let session = "projects/p1/locations/us-central1/reasoningEngines/default/sessions/chat-1";
    let operation = json_of(
        app.post(&format!("{engine}/memories:generate"), &json!({"vertexSessionSource": {"session": session}})).await,
        StatusCode::OK,
    )
    .await;
    let done = finished(&app, &operation).await;
    let name = done["response"]["generatedMemories"][0]["memory"]["name"].as_str().unwrap().to_owned();
    let memory = json_of(app.get(&format!("/v1beta1/{name}")).await, StatusCode::OK).await;
    assert!(memory["fact"].as_str().unwrap().contains("green"), "{memory}");
    assert_eq!(memory["scope"], json!({"user_id": "u2"}));
    let two_sources = json!({"vertexSessionSource": {"session": session}, "directMemoriesSource": {"direct_memories": [{"fact": "x"}]}});
    google_error(
        app.post(&format!("{engine}/memories:generate"), &two_sources).await,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    )
    .await;
}

#[tokio::test]
async fn ingested_events_become_memories_when_the_stream_flushes() {
    let app = spawn_app().await;
    let engine = format!("{EXPRESS}/default");
    let scope = json!({"user_id": "u5", "app_name": "app"});
    let event = |text: &str| json!({"content": {"role": "user", "parts": [{"text": text}]}, "event_id": text.len().to_string()});
    // An event count not reached yet: buffered, nothing queued.
    let waiting = json_of(
        app.post(
            &format!("{engine}/memories:ingestEvents"),
            &json!({"scope": scope, "streamId": "s", "directContentsSource": {"events": [event("I live in Porto")]},
                    "generationTriggerConfig": {"generation_rule": {"event_count": 2}}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(waiting["done"], true, "{waiting}");
    let reached = json_of(
        app.post(
            &format!("{engine}/memories:ingestEvents"),
            &json!({"scope": scope, "streamId": "s", "directContentsSource": {"events": [event("I am a nurse")]},
                    "generationTriggerConfig": {"generation_rule": {"event_count": 2}}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(reached["done"], false, "{reached}");
    let done = finished(&app, &reached).await;
    assert_eq!(done["response"]["generatedMemories"].as_array().unwrap().len(), 2, "{done}");
    // A flush of a stream with nothing waiting has nothing to do.
    let flushed = app
        .post(&format!("{engine}/memories:ingestEvents"), &json!({"scope": scope, "streamId": "s", "forceFlush": true}))
        .await;
    assert_eq!(json_of(flushed, StatusCode::OK).await["done"], true);
    // As ADK's add_session_to_memory sends: every event again, no rule (flushed at once). The
    // events already taken in are not taken again.
    let adk = json!({"scope": scope, "streamId": "", "directContentsSource": {"events": [event("I live in Porto"), event("I am a nurse"), event("I have a dog named Rex")]}});
    let operation = json_of(app.post(&format!("{engine}/memories:ingestEvents"), &adk).await, StatusCode::OK).await;
    let done = finished(&app, &operation).await;
    let generated = done["response"]["generatedMemories"].as_array().unwrap().clone();
    assert!(generated.iter().any(|item| item["action"] == "CREATED"), "{done}");
    let again = json_of(app.post(&format!("{engine}/memories:ingestEvents"), &adk).await, StatusCode::OK).await;
    assert_eq!(again["done"], true, "nothing new, nothing queued: {again}");
    // The stream's buffer is no session of the agent's.
    let sessions = json_of(app.get(&format!("{engine}/sessions")).await, StatusCode::OK).await;
    assert_eq!(sessions["sessions"], json!([]));
}

#[tokio::test]
async fn a_scope_limited_key_reaches_only_its_user() {
    let app = without_model::spawn_app().await;
    let key = json_of(
        app.post("/api/v1/keys", &json!({"name": "u1", "permissions": ["SESSION_READ", "SESSION_WRITE", "MEMORY_READ", "MEMORY_WRITE"], "scope": {"user_id": "u1"}})).await,
        StatusCode::CREATED,
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let engine = app.url(&format!("{PROJECT}/default"));
    json_of(
        app.post(&format!("{PROJECT}/default/sessions?sessionId=theirs"), &json!({"userId": "u2"})).await,
        StatusCode::OK,
    )
    .await;
    json_of(
        app.post(
            &format!("{PROJECT}/default/memories?memoryId=theirs"),
            &json!({"fact": "User likes jazz", "scope": {"user_id": "u2"}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let client = reqwest::Client::new();
    let mine = client
        .post(format!("{engine}/sessions"))
        .bearer_auth(&key)
        .json(&json!({"userId": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), StatusCode::OK);
    let forged = client
        .post(format!("{engine}/sessions"))
        .bearer_auth(&key)
        .json(&json!({"userId": "u2"}))
        .send()
        .await
        .unwrap();
    google_error(forged, StatusCode::FORBIDDEN, "PERMISSION_DENIED").await;
    for path in ["sessions/theirs", "memories/theirs"] {
        let theirs = client.get(format!("{engine}/{path}")).bearer_auth(&key).send().await.unwrap();
        google_error(theirs, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    let listed = client.get(format!("{engine}/memories")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(json_of(listed, StatusCode::OK).await["memories"], json!([]));
    let purge = client
        .post(format!("{engine}/memories:purge"))
        .bearer_auth(&key)
        .json(&json!({"filter": "fact:\"jazz\"", "force": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(purge, StatusCode::OK).await["response"]["purgeCount"], "0");
    json_of(app.get(&format!("{PROJECT}/default/memories/theirs")).await, StatusCode::OK).await;
}
