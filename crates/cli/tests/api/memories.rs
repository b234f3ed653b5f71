//! The memories API: CRUD, scope isolation, filters, pagination, revisions and restore,
//! purge, TTL, hybrid search, and bad input.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, id_of, json_of, memories_path as list_path, problem_of, spawn_app, url_encode};

async fn remember(app: &TestApp, body: Value) -> Value {
    json_of(app.post("/api/v1/memories", &body).await, StatusCode::CREATED).await
}

async fn search(app: &TestApp, body: Value) -> Vec<Value> {
    let found = json_of(app.post("/api/v1/memories/search", &body).await, StatusCode::OK).await;
    found["results"].as_array().unwrap().clone()
}

fn facts(results: &[Value]) -> Vec<String> {
    results.iter().map(|result| result["memory"]["fact"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn memories_are_created_read_updated_and_deleted() {
    let app = spawn_app().await;
    let body = json!({
        "scope": {"user_id": "u1", "app": "travel"},
        "fact": "  Prefers window seats  ",
        "topic": "USER_PREFERENCES",
        "confidence": 0.8,
        "source_session_id": "0190b8a4-0000-7000-8000-000000000001",
        "source_event_ids": ["0190b8a4-0000-7000-8000-000000000002"],
        "metadata": {"source": "chat", "n": 3, "nested": {"a": [1, null]}},
        "ttl_seconds": 3600
    });
    let created = remember(&app, body.clone()).await;
    assert_eq!(created["fact"], "Prefers window seats", "facts are trimmed");
    for field in ["scope", "topic", "confidence", "source_session_id", "source_event_ids", "metadata"] {
        assert_eq!(created[field], body[field], "{field}");
    }
    let id = id_of(&created);
    let fetched = json_of(app.get(&format!("/api/v1/memories/{id}")).await, StatusCode::OK).await;
    assert_eq!(fetched, created);

    let response = app
        .client
        .patch(app.url(&format!("/api/v1/memories/{id}")))
        .json(&json!({"fact": "Prefers aisle seats", "topic": null, "expires_at": null}))
        .send()
        .await
        .unwrap();
    let updated = json_of(response, StatusCode::OK).await;
    assert_eq!(updated["fact"], "Prefers aisle seats");
    assert_eq!(updated["topic"], Value::Null);
    assert_eq!(updated["expires_at"], Value::Null);
    assert_eq!(updated["metadata"], body["metadata"], "absent fields stay");
    assert_eq!(updated["created_at"], created["created_at"]);

    let results =
        search(&app, json!({"scope": {"user_id": "u1", "app": "travel"}, "search_query": "aisle seat"})).await;
    assert_eq!(facts(&results), ["Prefers aisle seats"], "search sees the new fact");
    assert_eq!(results[0]["memory"]["metadata"], body["metadata"], "metadata comes back unchanged");

    assert_eq!(app.delete(&format!("/api/v1/memories/{id}")).await.status(), StatusCode::NO_CONTENT);
    problem_of(app.get(&format!("/api/v1/memories/{id}")).await, StatusCode::NOT_FOUND, "memory_not_found").await;
    problem_of(app.delete(&format!("/api/v1/memories/{id}")).await, StatusCode::NOT_FOUND, "memory_not_found").await;
    assert!(
        search(&app, json!({"scope": {"user_id": "u1", "app": "travel"}, "search_query": "aisle seat"}))
            .await
            .is_empty()
    );
    problem_of(app.get("/api/v1/memories/not-a-uuid").await, StatusCode::NOT_FOUND, "memory_not_found").await;
}

#[tokio::test]
async fn revisions_record_every_change_and_restore_undoes_any() {
    let app = spawn_app().await;
    let scope = json!({"user_id": "u1"});
    let id = id_of(&remember(&app, json!({"scope": scope, "fact": "Favourite colour is blue"})).await);
    let path = format!("/api/v1/memories/{id}");
    app.client.patch(app.url(&path)).json(&json!({"fact": "Favourite colour is green"})).send().await.unwrap();
    app.delete(&path).await;

    let revisions = json_of(app.get(&format!("{path}/revisions")).await, StatusCode::OK).await;
    let revisions = revisions["revisions"].as_array().unwrap().clone();
    let actions: Vec<&str> = revisions.iter().map(|revision| revision["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["created", "updated", "deleted"], "a deleted memory's history stays readable");
    assert_eq!(revisions[0]["before"], Value::Null);
    assert_eq!(revisions[0]["after"]["fact"], "Favourite colour is blue");
    assert_eq!(revisions[1]["before"]["fact"], "Favourite colour is blue");
    assert_eq!(revisions[1]["after"]["fact"], "Favourite colour is green");
    assert_eq!(revisions[2]["before"]["fact"], "Favourite colour is green");
    assert_eq!(revisions[2]["after"], Value::Null);
    assert!(revisions.iter().all(|revision| revision["actor"].as_str().unwrap().starts_with("key:")));

    // Restoring the first revision brings the deleted memory back as it was created.
    let restored = json_of(
        app.post(&format!("{path}/restore"), &json!({"revision_id": revisions[0]["id"]})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(restored["fact"], "Favourite colour is blue");
    assert_eq!(json_of(app.get(&path).await, StatusCode::OK).await["fact"], "Favourite colour is blue");
    assert_eq!(
        facts(&search(&app, json!({"scope": scope, "search_query": "colour"})).await),
        ["Favourite colour is blue"]
    );
    let revisions = json_of(app.get(&format!("{path}/revisions")).await, StatusCode::OK).await;
    let last = revisions["revisions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "restored");
    assert_eq!(last["before"], Value::Null, "it was deleted before");

    problem_of(
        app.post(&format!("{path}/restore"), &json!({"revision_id": "0190b8a4-0000-7000-8000-000000000000"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    // Purge erases the memory and its history.
    assert_eq!(app.delete(&format!("{path}?purge=true")).await.status(), StatusCode::NO_CONTENT);
    problem_of(app.get(&format!("{path}/revisions")).await, StatusCode::NOT_FOUND, "memory_not_found").await;
    problem_of(
        app.post(&format!("{path}/restore"), &json!({"revision_id": last["id"]})).await,
        StatusCode::NOT_FOUND,
        "memory_not_found",
    )
    .await;
    assert!(search(&app, json!({"scope": scope, "search_query": "colour"})).await.is_empty());
}

#[tokio::test]
async fn scopes_never_mix() {
    let app = spawn_app().await;
    remember(&app, json!({"scope": {"user_id": "a"}, "fact": "Alice likes tea"})).await;
    remember(&app, json!({"scope": {"user_id": "b"}, "fact": "Bob likes tea"})).await;
    remember(&app, json!({"scope": {"user_id": "a", "agent_id": "x"}, "fact": "Agent x notes that Alice likes tea"}))
        .await;
    for (scope, expected) in [
        (json!({"user_id": "a"}), vec!["Alice likes tea"]),
        (json!({"user_id": "b"}), vec!["Bob likes tea"]),
        (json!({"agent_id": "x", "user_id": "a"}), vec!["Agent x notes that Alice likes tea"]),
        (json!({"user_id": "c"}), vec![]),
    ] {
        let found = search(&app, json!({"scope": scope, "search_query": "likes tea", "top_k": 100})).await;
        assert_eq!(facts(&found), expected, "search in {scope}");
        let listed = json_of(app.get(&list_path(&scope, "")).await, StatusCode::OK).await;
        let listed: Vec<&str> =
            listed["memories"].as_array().unwrap().iter().map(|m| m["fact"].as_str().unwrap()).collect();
        assert_eq!(listed, expected, "list of {scope}");
    }
}

#[tokio::test]
async fn hybrid_search_ranks_by_words_and_meaning() {
    let app = spawn_app().await;
    let scope = json!({"user_id": "u1"});
    for fact in [
        "I love hiking in the Alps",
        "The quarterly tax report is due on Friday",
        "My sister Maria lives in Porto",
        "I am allergic to peanuts",
    ] {
        remember(&app, json!({"scope": scope, "fact": fact})).await;
    }
    // Meaning without shared words (embeddings), and exact rare words (BM25).
    let found = search(&app, json!({"scope": scope, "search_query": "favourite mountain sport", "top_k": 2})).await;
    assert_eq!(facts(&found)[0], "I love hiking in the Alps");
    let found = search(&app, json!({"scope": scope, "search_query": "Where does Maria live?", "top_k": 2})).await;
    assert_eq!(facts(&found)[0], "My sister Maria lives in Porto");
    let found = search(&app, json!({"scope": scope, "search_query": "peanuts", "top_k": 1})).await;
    assert_eq!(facts(&found), ["I am allergic to peanuts"]);
    let scores: Vec<f64> = search(&app, json!({"scope": scope, "search_query": "tax"}))
        .await
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 4);
    assert!(scores.windows(2).all(|pair| pair[0] >= pair[1]), "best first: {scores:?}");
    // Search syntax in the query is just text.
    search(&app, json!({"scope": scope, "search_query": "\"unbalanced AND OR NEAR( * -"})).await;
}

#[tokio::test]
async fn filters_and_pagination() {
    let app = spawn_app().await;
    let scope = json!({"user_id": "u1"});
    let mut ids = Vec::new();
    for n in 0..7 {
        let topic = if n % 2 == 0 { "even" } else { "odd" };
        ids.push(id_of(&remember(&app, json!({"scope": scope, "fact": format!("fact number {n}"), "topic": topic, "metadata": {"n": n, "parity": topic}})).await));
    }
    let middle = json_of(app.get(&format!("/api/v1/memories/{}", ids[3])).await, StatusCode::OK).await;

    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = json_of(app.get(&list_path(&scope, &format!("&limit=3{cursor}"))).await, StatusCode::OK).await;
        listed.extend(page["memories"].as_array().unwrap().iter().map(id_of));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(listed, ids, "newest first, each once");

    let odd = json_of(app.get(&list_path(&scope, "&topic=odd")).await, StatusCode::OK).await;
    assert_eq!(odd["memories"].as_array().unwrap().len(), 3);
    let created_at = url_encode(middle["created_at"].as_str().unwrap());
    let newer =
        json_of(app.get(&list_path(&scope, &format!("&created_after={created_at}"))).await, StatusCode::OK).await;
    assert_eq!(newer["memories"].as_array().unwrap().len(), 3);

    let found =
        search(&app, json!({"scope": scope, "search_query": "fact number", "top_k": 100, "filter": {"topic": "even"}}))
            .await;
    assert_eq!(found.len(), 4);
    let found = search(&app, json!({"scope": scope, "search_query": "fact", "filter": {"metadata": {"n": 5}}})).await;
    assert_eq!(facts(&found), ["fact number 5"]);
    let found = search(&app, json!({"scope": scope, "search_query": "fact", "filter": {"metadata": {"parity": "odd"}, "created_before": middle["created_at"]}})).await;
    assert_eq!(facts(&found).into_iter().collect::<BTreeSet<_>>(), BTreeSet::from(["fact number 1".to_owned()]));
    let found = search(&app, json!({"scope": scope, "search_query": "fact", "filter": {"updated_after": middle["updated_at"]}, "top_k": 100})).await;
    assert_eq!(found.len(), 3);
    // The best candidates fail the filter: search reads on down the ranking until it has top_k.
    let found =
        search(&app, json!({"scope": scope, "search_query": "fact number 6", "top_k": 2, "filter": {"topic": "odd"}}))
            .await;
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|found| found["memory"]["topic"] == "odd"), "{found:?}");
}

#[tokio::test]
async fn a_memory_knows_when_it_was_said_and_search_filters_and_weighs_by_it() {
    let app = spawn_app().await;
    let scope = json!({"user_id": "when"});
    let old = remember(
        &app,
        json!({"scope": scope, "fact": "User's favourite tea is green tea", "said_at": "2020-03-01T08:00:00Z"}),
    )
    .await;
    assert_eq!(old["said_at"], "2020-03-01T08:00:00Z");
    assert_ne!(old["created_at"], old["said_at"], "said years before it was stored");
    let new = remember(&app, json!({"scope": scope, "fact": "User's favourite tea is black tea"})).await;
    assert_eq!(new["said_at"], new["created_at"], "without a time, said when stored");

    // Filters: list and search by when it was said.
    let said_before = url_encode("2021-01-01T00:00:00Z");
    let listed =
        json_of(app.get(&list_path(&scope, &format!("&said_before={said_before}"))).await, StatusCode::OK).await;
    assert_eq!(listed["memories"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(), [id_of(&old)]);
    let listed =
        json_of(app.get(&list_path(&scope, &format!("&said_after={said_before}"))).await, StatusCode::OK).await;
    assert_eq!(listed["memories"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(), [id_of(&new)]);
    let query = json!({"scope": scope, "search_query": "green tea"});
    let mut filtered = query.clone();
    filtered["filter"] = json!({"said_after": "2021-01-01T00:00:00Z"});
    assert_eq!(facts(&search(&app, filtered).await), ["User's favourite tea is black tea"]);

    // Relevance alone puts the green tea first; weighed by recency, what was said now wins.
    assert_eq!(facts(&search(&app, query.clone()).await)[0], "User's favourite tea is green tea");
    let mut recent = query.clone();
    recent["recency_weight"] = json!(0.9);
    let found = search(&app, recent.clone()).await;
    assert_eq!(facts(&found), ["User's favourite tea is black tea", "User's favourite tea is green tea"]);
    assert!(found[0]["score"].as_f64().unwrap() <= 1.0 && found[1]["score"].as_f64().unwrap() >= 0.0);
    // A half-life of a century keeps six years old nearly as recent as now.
    recent["recency_weight"] = json!(0.3);
    recent["recency_half_life_days"] = json!(36_525);
    assert_eq!(facts(&search(&app, recent).await)[0], "User's favourite tea is green tea");

    // A patch moves it; a restore brings back the time the revision recorded.
    let path = format!("/api/v1/memories/{}", id_of(&old));
    let patched = json_of(
        app.client.patch(app.url(&path)).json(&json!({"said_at": "2019-05-05T05:05:05Z"})).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["said_at"], "2019-05-05T05:05:05Z");
    let revisions = json_of(app.get(&format!("{path}/revisions")).await, StatusCode::OK).await;
    let first = revisions["revisions"][0].clone();
    assert_eq!(first["after"]["said_at"], "2020-03-01T08:00:00Z");
    let restored =
        json_of(app.post(&format!("{path}/restore"), &json!({"revision_id": first["id"]})).await, StatusCode::OK).await;
    assert_eq!(restored["said_at"], "2020-03-01T08:00:00Z");

    // Nonsense is refused and changes nothing.
    let future = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let cases = [
        ("/api/v1/memories", json!({"scope": scope, "fact": "f", "said_at": future}), "said_at"),
        ("/api/v1/memories", json!({"scope": scope, "fact": "f", "said_at": "yesterday"}), "said_at"),
        (
            "/api/v1/memories",
            json!({"scope": scope, "fact": "f", "said_at": "2020-01-01T00:00:00Z", "consolidate": true}),
            "said_at",
        ),
        (
            "/api/v1/memories/search",
            json!({"scope": scope, "search_query": "tea", "recency_weight": 1.5}),
            "recency_weight",
        ),
        (
            "/api/v1/memories/search",
            json!({"scope": scope, "search_query": "tea", "recency_weight": -0.1}),
            "recency_weight",
        ),
        (
            "/api/v1/memories/search",
            json!({"scope": scope, "search_query": "tea", "recency_weight": 0.5, "recency_half_life_days": 0}),
            "recency_half_life_days",
        ),
        (
            "/api/v1/memories/search",
            json!({"scope": scope, "search_query": "tea", "recency_weight": 0.5, "recency_half_life_days": 40000}),
            "recency_half_life_days",
        ),
        (
            "/api/v1/memories/search",
            json!({"scope": scope, "search_query": "tea", "recency_half_life_days": -7}),
            "recency_half_life_days",
        ),
        (
            "/api/v1/memories/search",
            json!({"scope": scope, "search_query": "tea", "filter": {"said_after": "soon"}}),
            "filter.said_after",
        ),
    ];
    for (path, body, field) in cases {
        let response = app.post(path, &body).await;
        let problem = problem_of(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["field"], field, "{body} -> {problem}");
    }
    let response = app.client.patch(app.url(&path)).json(&json!({"said_at": future})).send().await.unwrap();
    problem_of(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let listed = json_of(app.get(&list_path(&scope, "")).await, StatusCode::OK).await;
    assert_eq!(listed["memories"].as_array().unwrap().len(), 2, "no refused request stored anything");
}

#[tokio::test]
async fn expired_memories_are_never_returned() {
    let app = spawn_app().await;
    let scope = json!({"user_id": "ttl"});
    let id = id_of(
        &remember(&app, json!({"scope": scope, "fact": "A passing thought about kites", "ttl_seconds": 1})).await,
    );
    remember(&app, json!({"scope": scope, "fact": "A lasting thought about kites"})).await;
    app.clock.advance(Duration::from_millis(1100));
    problem_of(app.get(&format!("/api/v1/memories/{id}")).await, StatusCode::NOT_FOUND, "memory_not_found").await;
    assert_eq!(
        facts(&search(&app, json!({"scope": scope, "search_query": "kites"})).await),
        ["A lasting thought about kites"]
    );
    let listed = json_of(app.get(&list_path(&scope, "")).await, StatusCode::OK).await;
    assert_eq!(listed["memories"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let app = spawn_app().await;
    let scope = json!({"user_id": "u1"});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/api/v1/memories", json!({"scope": scope, "fact": ""}), "fact"),
        ("/api/v1/memories", json!({"scope": scope, "fact": "   "}), "fact"),
        ("/api/v1/memories", json!({"scope": scope, "fact": "x".repeat(4001)}), "fact"),
        ("/api/v1/memories", json!({"scope": {"user_id": 5}, "fact": "f"}), "scope.user_id"),
        ("/api/v1/memories", json!({"scope": {}, "fact": "f"}), "scope"),
        ("/api/v1/memories", json!({"fact": "f"}), "scope"),
        ("/api/v1/memories", json!({"scope": scope, "fact": "f", "confidence": 1.5}), "confidence"),
        ("/api/v1/memories", json!({"scope": scope, "fact": "f", "topic": ""}), "topic"),
        ("/api/v1/memories", json!({"scope": scope, "fact": "f", "ttl_seconds": 0}), "ttl_seconds"),
        ("/api/v1/memories", json!({"scope": scope, "fact": "f", "surprise": true}), "surprise"),
        ("/api/v1/memories", json!({"scope": scope, "fact": "f", "source_event_ids": ["nope"]}), "source_event_ids[0]"),
        ("/api/v1/memories/search", json!({"scope": scope, "search_query": "x", "top_k": 0}), "top_k"),
        ("/api/v1/memories/search", json!({"scope": scope, "search_query": "x", "top_k": 101}), "top_k"),
        ("/api/v1/memories/search", json!({"scope": scope, "search_query": ""}), "search_query"),
        ("/api/v1/memories/search", json!({"scope": scope}), "search_query"),
        (
            "/api/v1/memories/search",
            json!({"scope": scope, "search_query": "x", "filter": {"colour": "red"}}),
            "filter.colour",
        ),
        ("/api/v1/memories/search", json!({"scope": {"user_id": ["a"]}, "search_query": "x"}), "scope.user_id"),
    ];
    for (path, body, field) in cases {
        let response = app.post(path, &body).await;
        let status = response.status();
        let problem = json_of(response, status).await;
        assert!(status == StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {status} {problem}");
        assert_eq!(problem["field"], field, "{body} -> {problem}");
    }
    for query in ["", "?scope=nope", "?scope=%7B%7D", "?scope=%7B%22user_id%22%3A%22u1%22%7D&limit=0"] {
        let response = app.get(&format!("/api/v1/memories{query}")).await;
        problem_of(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let listed = json_of(app.get(&list_path(&scope, "")).await, StatusCode::OK).await;
    assert_eq!(listed["memories"], json!([]), "no rejected request stored anything");
}

#[tokio::test]
async fn a_changed_embedding_model_is_refused_until_reindexed() {
    let app = spawn_app().await;
    remember(&app, json!({"scope": {"user_id": "u1"}, "fact": "Some fact"})).await;
    let data_dir = app.data_dir.clone();
    app.stop().await;
    let mut settings = contextiq_server::Settings { data_dir: data_dir.path().to_owned(), ..Default::default() };
    settings.server.bind = "127.0.0.1:0".to_owned();
    settings.embedding.provider = contextiq_server::config::EmbeddingProvider::Openai;
    settings.embedding.base_url = "http://127.0.0.1:1/v1".to_owned();
    settings.database.url = crate::helpers::test_database_url(data_dir.path()).await.map(Into::into);
    let err = contextiq_server::Application::build(settings).await.err().expect("a different model is refused");
    let message = err.to_string();
    assert!(message.contains("contextiq reindex") && message.contains("all-MiniLM-L6-v2"), "{message}");
}

async fn profile(client: &reqwest::Client, app: &TestApp, scope: &Value) -> Vec<(String, String, String)> {
    let path = format!("/api/v1/memories/profile?scope={}", url_encode(&scope.to_string()));
    let body = json_of(client.get(app.url(&path)).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(body["scope"], *scope);
    body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let field = |name: &str| entry[name].as_str().unwrap().to_owned();
            (field("attribute"), field("value"), field("memory_id"))
        })
        .collect()
}

#[tokio::test]
async fn a_profile_holds_the_current_value_of_each_attribute() {
    let app = spawn_app().await;
    let scope = json!({"user_id": "p1"});
    let mut ids = std::collections::HashMap::new();
    for fact in [
        "User's name is Sam",
        "User lives in Berlin",
        "User is 41 years old",
        "User likes jazz",
        "User works at Acme",
        "User went hiking yesterday",
        "User lives in Lisbon",
        "User no longer works at Acme",
    ] {
        // Apart in time, so "newest" is well defined on every backend.
        tokio::time::sleep(Duration::from_millis(5)).await;
        ids.insert(fact, id_of(&remember(&app, json!({"scope": scope, "fact": fact})).await));
    }
    remember(&app, json!({"scope": {"user_id": "p1", "app": "x"}, "fact": "User lives in Paris"})).await;
    let expected = |entries: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        entries
            .iter()
            .map(|(attribute, value, fact)| ((*attribute).into(), (*value).into(), ids[fact].clone()))
            .collect()
    };
    // The newest residence wins; a denied employer has no value; a past event sets nothing; the
    // wider scope's memory is not this scope's.
    assert_eq!(
        profile(&app.client, &app, &scope).await,
        expected(&[
            ("age", "41 years old", "User is 41 years old"),
            ("name", "Sam", "User's name is Sam"),
            ("opinion:jazz", "likes jazz", "User likes jazz"),
            ("residence", "Lisbon", "User lives in Lisbon"),
        ])
    );

    // An edit changes the value and its time; a deletion brings back the value before it.
    let lisbon = &ids["User lives in Lisbon"];
    let path = format!("/api/v1/memories/{lisbon}");
    let edited = json_of(
        app.client.patch(app.url(&path)).json(&json!({"fact": "User lives in Porto"})).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let body = json_of(
        app.get(&format!("/api/v1/memories/profile?scope={}", url_encode(&scope.to_string()))).await,
        StatusCode::OK,
    )
    .await;
    let residence =
        body["attributes"].as_array().unwrap().iter().find(|entry| entry["attribute"] == "residence").unwrap();
    assert_eq!(residence["value"], "Porto");
    assert_eq!(residence["fact"], "User lives in Porto");
    assert_eq!(residence["updated_at"], edited["updated_at"]);
    assert_eq!(app.delete(&path).await.status(), StatusCode::NO_CONTENT);
    let after = profile(&app.client, &app, &scope).await;
    assert!(after.contains(&("residence".into(), "Berlin".into(), ids["User lives in Berlin"].clone())), "{after:?}");

    // A key limited to another user sees no profile here; an empty scope has none.
    let key = json_of(
        app.post("/api/v1/keys", &json!({"name": "p2", "permissions": ["MEMORY_READ"], "scope": {"user_id": "p2"}}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let other = crate::helpers::client_with_key(key["key"].as_str().unwrap());
    assert_eq!(profile(&other, &app, &scope).await, vec![]);
    assert_eq!(profile(&app.client, &app, &json!({"user_id": "nobody"})).await, vec![]);

    for bad in ["", "?scope=nope", "?scope=%5B%5D", "?scope=%7B%7D", "?scope=%7B%22a%22%3A1%7D", "?scope=%7B%7D&x=1"] {
        let response = app.get(&format!("/api/v1/memories/profile{bad}")).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    }
}
