//! The OpenAPI document is the contract: every parameter where it says, every status and
//! content type a request can get declared, and no query parameter a route does not declare.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::create_key;
use crate::helpers::without_model::{spawn_app, spawn_app_with};
use crate::helpers::{TestApp, client_with_key, id_of, json_of, problem_of};

/// `/openapi.json` as the application serves it.
struct Contract {
    document: Value,
}

impl Contract {
    async fn of(app: &TestApp) -> Contract {
        let response = reqwest::get(app.url("/openapi.json")).await.expect("request sent");
        Contract { document: json_of(response, StatusCode::OK).await }
    }

    /// Every `(method, template, operation)` of the document.
    fn operations(&self) -> Vec<(Method, String, &Value)> {
        let mut operations = Vec::new();
        for (template, item) in self.document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                if let Ok(method) = method.to_uppercase().parse::<Method>() {
                    operations.push((method, template.clone(), operation));
                }
            }
        }
        operations
    }

    /// The operation `path` (a concrete path) is an instance of: the template matching it
    /// with the most literal segments, as the router picks `/memories/search` over
    /// `/memories/{id}`.
    fn operation(&self, method: &Method, path: &str) -> Option<(String, &Value)> {
        let segments: Vec<&str> = path.split('/').collect();
        self.operations()
            .into_iter()
            .filter(|(candidate, _, _)| candidate == method)
            .filter_map(|(_, template, operation)| {
                let parts: Vec<&str> = template.split('/').collect();
                let matches = parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(part, segment)| part.starts_with('{') || part == segment);
                let n_literal = parts.iter().filter(|part| !part.starts_with('{')).count();
                matches.then_some((n_literal, template, operation))
            })
            .max_by_key(|(n_literal, _, _)| *n_literal)
            .map(|(_, template, operation)| (template, operation))
    }

    /// Sends `request` and fails unless the document declares the status of its answer for
    /// that operation, with the answer's content type (or no content, for an empty answer).
    /// Returns the status and the body (JSON, or the text as a JSON string).
    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let (client, request) = request.build_split();
        let request = request.expect("a request");
        let (method, path) = (request.method().clone(), request.url().path().to_owned());
        let what = format!("{method} {}", request.url());
        let response = client.execute(request).await.expect("request sent");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or_default().trim().to_owned());
        let text = response.text().await.expect("a body");
        let (template, operation) =
            self.operation(&method, &path).unwrap_or_else(|| panic!("{what}: no operation of the document"));
        let declared = &operation["responses"][status.as_str()];
        assert!(declared.is_object(), "{what} answered {status}, which {method} {template} does not declare: {text}");
        let media_types = declared["content"].as_object().cloned().unwrap_or_default();
        match (text.is_empty(), content_type) {
            (true, _) => assert!(media_types.is_empty(), "{what}: {status} declares content but came empty"),
            (false, Some(content_type)) => assert!(
                media_types.contains_key(&content_type),
                "{what}: {status} came as {content_type}; {template} declares {:?}",
                media_types.keys().collect::<Vec<_>>()
            ),
            (false, None) => panic!("{what}: {status} came with a body and no content type"),
        }
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

#[tokio::test]
async fn parameters_sit_where_the_routes_read_them() {
    let app = spawn_app().await;
    let contract = Contract::of(&app).await;
    let mut n_query = 0;
    for (method, template, operation) in contract.operations() {
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().expect("a name");
            match parameter["in"].as_str() {
                Some("path") => {
                    assert!(template.contains(&format!("{{{name}}}")), "{method} {template}: {name} is not in the path")
                }
                Some("query") if template.starts_with("/v1beta1/") => {}
                Some("query") => {
                    n_query += 1;
                    let required = parameter["required"] == true;
                    let expect =
                        matches!((template.as_str(), name), ("/api/v1/memories" | "/api/v1/memories/profile", "scope"));
                    assert_eq!(required, expect, "{method} {template}: {name} required");
                }
                // The engine everywhere; a stream's resume point (what browsers send) on its route.
                Some("header") if name == "Last-Event-ID" => {
                    assert_eq!(template.as_str(), "/api/v1/sessions/{id}/events/stream", "{method} {template}: {name}")
                }
                Some("header") => assert_eq!(name, "X-Engine-Id", "{method} {template}: the one header parameter"),
                other => panic!("{method} {template}: {name} in {other:?}"),
            }
        }
        // `{name}` anywhere in a segment (`/sessions/{session}:appendEvent`).
        for placeholder in template.split('{').skip(1) {
            let name = placeholder.split('}').next().expect("a closing brace");
            let declared = operation["parameters"].as_array().into_iter().flatten().any(|p| p["name"] == name);
            assert!(declared, "{method} {template}: {name} is not declared");
        }
    }
    assert_eq!(n_query, 22, "the query parameters of the API");
}

#[tokio::test]
async fn every_operation_declares_what_the_layers_around_it_answer() {
    let app = spawn_app().await;
    let contract = Contract::of(&app).await;
    for (method, template, operation) in contract.operations() {
        let responses = operation["responses"].as_object().expect("responses");
        // The Agent Engine surface: Google's statuses and error body.
        if template.starts_with("/v1beta1/") {
            assert_ne!(operation["security"], json!([]), "{method} {template} needs credentials");
            for status in ["400", "401", "403", "404", "429", "500", "503"] {
                assert!(responses.contains_key(status), "{method} {template} does not declare {status}");
            }
            for (status, response) in responses.iter().filter(|(status, _)| !status.starts_with('2')) {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/GoogleError", "{method} {template} {status}");
            }
            continue;
        }
        let mut expected = vec!["422", "500", "503"];
        if template.starts_with("/api/") {
            expected.extend(["401", "403", "429"]);
            assert_ne!(operation["security"], json!([]), "{method} {template} needs credentials");
        } else {
            assert_eq!(operation["security"], json!([]), "{method} {template} needs no credentials");
        }
        if operation.get("requestBody").is_some() {
            expected.extend(["400", "413", "415"]);
        }
        if template.contains('{') {
            expected.push("404");
        }
        for status in expected {
            assert!(responses.contains_key(status), "{method} {template} does not declare {status}");
        }
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let media_types: Vec<&String> = response["content"].as_object().expect("content").keys().collect();
                assert_eq!(media_types, ["application/problem+json"], "{method} {template} {status}");
            }
        }
    }
    let request = &contract.document["components"]["schemas"]["SearchRequest"]["properties"];
    assert_eq!((request["top_k"]["minimum"].as_u64(), request["top_k"]["maximum"].as_u64()), (Some(1), Some(100)));
    assert_eq!(request["search_query"]["maxLength"], 4000);
    let created =
        &contract.document["paths"]["/api/v1/sessions"]["post"]["responses"]["201"]["content"]["application/json"];
    assert_eq!(created["schema"]["$ref"], "#/components/schemas/CreatedSession");
    let created = contract.document["components"]["schemas"]["CreatedSession"].to_string();
    assert!(created.contains(r#""required":["events"]"#), "a created session has events: {created}");
    let session = &contract.document["components"]["schemas"]["CreateSessionRequest"]["properties"];
    assert_eq!(
        (session["user_id"]["minLength"].as_u64(), session["user_id"]["maxLength"].as_u64()),
        (Some(1), Some(256))
    );
}

#[tokio::test]
async fn every_answer_is_declared_in_the_document() {
    let app = spawn_app().await;
    let contract = Contract::of(&app).await;
    let admin = &app.client;
    let anonymous = reqwest::Client::new();
    let url = |path: &str| app.url(path);
    let missing = Uuid::new_v4();

    // Sessions.
    let (status, session) = contract.send(admin.post(url("/api/v1/sessions")).json(&json!({"user_id": "u1"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let session_id = id_of(&session);
    let sessions = format!("/api/v1/sessions/{session_id}");
    for (request, expect) in [
        (admin.post(url("/api/v1/sessions")).header("content-type", "application/json").body("{"), 400),
        (admin.post(url("/api/v1/sessions")).header("content-type", "text/plain").body("{}"), 415),
        (admin.post(url("/api/v1/sessions")).json(&json!({"user_id": ""})), 422),
        (admin.post(url("/api/v1/sessions")).json(&json!({"user_id": "u", "x": 1})), 422),
        (admin.post(url("/api/v1/sessions")).json(&json!({"user_id": "x".repeat(2 << 20)})), 413),
        (anonymous.post(url("/api/v1/sessions")).json(&json!({"user_id": "u"})), 401),
        (client_with_key("ck_invalid").get(url("/api/v1/sessions")), 401),
        (admin.get(url("/api/v1/sessions?limit=1")), 200),
        (admin.get(url("/api/v1/sessions?limit=0")), 422),
        (admin.get(url("/api/v1/sessions?cursor=nonsense")), 422),
        (admin.get(url("/api/v1/sessions?offset=2")), 422),
        (admin.get(url(&sessions)), 200),
        (admin.get(url(&format!("{sessions}?include_events=false"))), 200),
        (admin.get(url(&format!("{sessions}?include_events=maybe"))), 422),
        (admin.get(url(&format!("/api/v1/sessions/{missing}"))), 404),
        (admin.get(url("/api/v1/sessions/not-a-uuid")), 404),
        (admin.post(url(&format!("{sessions}/events"))).json(&json!({"author": "u", "content": "hi"})), 201),
        (admin.post(url(&format!("{sessions}/events"))).json(&json!({"events": [{"author": "u", "content": 1}]})), 201),
        (admin.post(url(&format!("{sessions}/events"))).json(&json!({"author": "u", "content": null})), 422),
        (
            admin
                .post(url(&format!("/api/v1/sessions/{missing}/events")))
                .json(&json!({"author": "u", "content": "x"})),
            404,
        ),
        (admin.get(url(&format!("{sessions}/events?limit=1"))), 200),
        (admin.get(url(&format!("{sessions}/events?limit=100000"))), 422),
        (admin.patch(url(&format!("{sessions}/state"))).json(&json!({"a": 1})), 200),
        (admin.patch(url(&format!("{sessions}/state"))).header("content-type", "application/json").body("[1]"), 422),
        (admin.delete(url(&format!("/api/v1/sessions/{missing}"))), 404),
        (admin.delete(url(&sessions)), 204),
    ] {
        assert_eq!(contract.send(request).await.0.as_u16(), expect);
    }

    // Memories and jobs.
    let scope = json!({"user_id": "u1"});
    let (status, memory) = contract
        .send(admin.post(url("/api/v1/memories")).json(&json!({"scope": scope, "fact": "The user likes tea."})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let memory_id = id_of(&memory);
    let memories = format!("/api/v1/memories/{memory_id}");
    let (_, revisions) = contract.send(admin.get(url(&format!("{memories}/revisions")))).await;
    let revision_id = revisions["revisions"][0]["id"].as_str().expect("a revision").to_owned();
    let (status, job) = contract
        .send(admin.post(url("/api/v1/memories/generate")).json(&json!({
            "source_type": "events", "scope": scope, "events": [{"content": "I live in Lisbon."}]
        })))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let scope_query = "scope=%7B%22user_id%22%3A%22u1%22%7D";
    for (request, expect) in [
        (admin.post(url("/api/v1/memories")).json(&json!({"scope": scope, "fact": "x", "consolidate": true})), 202),
        (admin.post(url("/api/v1/memories")).json(&json!({"scope": scope, "fact": " "})), 422),
        (admin.get(url(&format!("/api/v1/memories?{scope_query}&limit=5"))), 200),
        (admin.get(url("/api/v1/memories?scope=nope")), 422),
        (admin.get(url("/api/v1/memories")), 422),
        (admin.get(url(&memories)), 200),
        (admin.get(url(&format!("/api/v1/memories/{missing}"))), 404),
        (admin.patch(url(&memories)).json(&json!({"topic": "drinks"})), 200),
        (admin.patch(url(&memories)).json(&json!({"confidence": 2})), 422),
        (admin.get(url(&format!("/api/v1/memories/{missing}/revisions"))), 404),
        (admin.get(url(&format!("{memories}/revisions?limit=2"))), 422),
        (admin.post(url(&format!("{memories}/restore"))).json(&json!({"revision_id": revision_id})), 200),
        (admin.post(url(&format!("{memories}/restore"))).json(&json!({"revision_id": missing})), 422),
        (admin.post(url("/api/v1/memories/search")).json(&json!({"scope": scope, "search_query": "tea"})), 200),
        (
            admin
                .post(url("/api/v1/memories/search"))
                .json(&json!({"scope": scope, "search_query": "tea", "top_k": 0})),
            422,
        ),
        (admin.get(url(&format!("/api/v1/memories/profile?{scope_query}"))), 200),
        (admin.get(url("/api/v1/memories/profile?scope=%5B%5D")), 422),
        (admin.post(url("/api/v1/memories/generate")).json(&json!({"source_type": "session"})), 422),
        (admin.get(url(&format!("/api/v1/jobs/{}", id_of(&job)))), 200),
        (admin.get(url(&format!("/api/v1/jobs/{missing}"))), 404),
        (admin.delete(url(&format!("{memories}?purge=maybe"))), 422),
        (admin.delete(url(&memories)), 204),
        (admin.delete(url(&format!("{memories}?purge=true"))), 204),
        (admin.delete(url(&memories)), 404),
    ] {
        assert_eq!(contract.send(request).await.0.as_u16(), expect);
    }

    // Keys, and a credential without the permission.
    let (reader, reader_id) = create_key(&app, admin, json!({"name": "reader", "permissions": ["SESSION_READ"]})).await;
    let reader = client_with_key(&reader);
    for (request, expect) in [
        (admin.post(url("/api/v1/keys")).json(&json!({"name": "k", "permissions": ["MEMORY_READ"]})), 201),
        (admin.post(url("/api/v1/keys")).json(&json!({"name": "k", "permissions": []})), 422),
        (admin.get(url("/api/v1/keys")), 200),
        (admin.get(url(&format!("/api/v1/keys/{reader_id}"))), 200),
        (admin.get(url(&format!("/api/v1/keys/{missing}"))), 404),
        (reader.get(url("/api/v1/keys")), 403),
        (reader.post(url("/api/v1/sessions")).json(&json!({"user_id": "u"})), 403),
        (admin.delete(url(&format!("/api/v1/keys/{reader_id}"))), 200),
        (reader.get(url("/api/v1/sessions")), 401),
    ] {
        assert_eq!(contract.send(request).await.0.as_u16(), expect);
    }

    // The service endpoints, without credentials.
    for (path, expect) in [("/health", 200), ("/health/ready", 200), ("/metrics", 200), ("/health?verbose=1", 422)] {
        assert_eq!(contract.send(anonymous.get(url(path))).await.0.as_u16(), expect, "{path}");
    }

    // The Agent Engine surface, in the form the document describes.
    let engine = "/v1beta1/projects/p/locations/l/reasoningEngines/e1";
    for (request, expect) in [
        (admin.post(url(&format!("{engine}/sessions?sessionId=c1"))).json(&json!({"userId": "u1"})), 200),
        (admin.post(url(&format!("{engine}/sessions?sessionId=c1"))).json(&json!({"userId": "u1"})), 409),
        (admin.get(url(&format!("{engine}/sessions/c1"))), 200),
        (admin.get(url(&format!("{engine}/sessions?pageSize=1"))), 200),
        (admin.post(url(&format!("{engine}/sessions/c1:appendEvent"))).json(&json!({"author": "user"})), 200),
        (admin.get(url(&format!("{engine}/sessions/c1/events"))), 200),
        (admin.patch(url(&format!("{engine}/sessions/c1"))).json(&json!({"sessionState": {"a": 1}})), 200),
        (admin.get(url(&format!("{engine}/sessions/missing"))), 404),
        (admin.post(url(&format!("{engine}/sessions"))).json(&json!({"userId": 1})), 400),
        (admin.post(url(&format!("{engine}/sessions"))).body("{"), 400),
        (anonymous.get(url(&format!("{engine}/sessions"))), 401),
        (
            admin.post(url(&format!("{engine}/memories?memoryId=m1"))).json(&json!({"fact": "f", "scope": {"u": "1"}})),
            200,
        ),
        (admin.get(url(&format!("{engine}/memories?orderBy=update_time"))), 200),
        (admin.get(url(&format!("{engine}/memories/m1/revisions"))), 200),
        (admin.post(url(&format!("{engine}/memories:retrieve"))).json(&json!({"scope": {"u": "1"}})), 200),
        (admin.post(url(&format!("{engine}/memories:purge"))).json(&json!({"filter": "fact=\"f\""})), 200),
        (admin.post(url(&format!("{engine}/memories:retrieveProfiles"))).json(&json!({"scope": {"u": "1"}})), 200),
        (admin.delete(url(&format!("{engine}/memories/m1"))), 200),
        (admin.delete(url(&format!("{engine}/sessions/c1"))), 200),
    ] {
        assert_eq!(contract.send(request).await.0.as_u16(), expect);
    }
}

#[tokio::test]
async fn a_rate_limited_answer_is_declared() {
    let app = spawn_app_with(|settings| {
        settings.auth.rate_limit_per_second = 1;
        settings.auth.rate_limit_burst = 1;
    })
    .await;
    let contract = Contract::of(&app).await;
    // The bucket holds one request and refills once a second: some request soon finds it empty.
    for _ in 0..10_000 {
        let (status, _) = contract.send(app.client.get(app.url("/api/v1/sessions"))).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return;
        }
    }
    panic!("no request was rate limited");
}

#[tokio::test]
async fn unknown_query_parameters_are_refused_on_every_route() {
    let app = spawn_app().await;
    let contract = Contract::of(&app).await;
    let any_id = Uuid::new_v4().to_string();
    let operations = contract.operations();
    assert!(operations.len() >= 24, "every operation of the API is in the document");
    for (method, template, _) in operations {
        if template.starts_with("/v1beta1/") {
            // Google's error body, naming the parameter.
            let path = template.split('{').enumerate().fold(String::new(), |path, (index, part)| match index {
                0 => part.to_owned(),
                _ => format!("{path}x1{}", part.split_once('}').expect("a closing brace").1),
            });
            let response = app.client.request(method.clone(), app.url(&format!("{path}?not_a_parameter=1"))).send();
            let error = json_of(response.await.unwrap(), StatusCode::BAD_REQUEST).await;
            assert_eq!(error["error"]["status"], "INVALID_ARGUMENT", "{method} {template}");
            assert_eq!(error["error"]["details"][0]["metadata"]["field"], "not_a_parameter", "{method} {template}");
            continue;
        }
        let path = template.replace("{id}", &any_id);
        let request = app.client.request(method.clone(), app.url(&format!("{path}?not_a_parameter=1")));
        let problem =
            problem_of(request.send().await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["field"], "not_a_parameter", "{method} {template}");
    }

    // The cases that used to be ignored: a second page that was the first, every user's
    // sessions, every revision.
    let session = app.create_session(&json!({"user_id": "u1"})).await;
    app.create_session(&json!({"user_id": "u2"})).await;
    let memory = json_of(
        app.post("/api/v1/memories", &json!({"scope": {"user_id": "u1"}, "fact": "The user likes tea."})).await,
        StatusCode::CREATED,
    )
    .await;
    for (path, field) in [
        ("/api/v1/sessions?offset=2".to_owned(), "offset"),
        ("/api/v1/sessions?limit=1&scope_user_id=u1".to_owned(), "scope_user_id"),
        (format!("/api/v1/memories/{}/revisions?limit=2", id_of(&memory)), "limit"),
        (format!("/api/v1/sessions/{}?include_events=false&events=0", id_of(&session)), "events"),
        ("/api/v1/sessions?LIMIT=1".to_owned(), "LIMIT"),
        ("/api/v1/sessions?=1".to_owned(), ""),
        ("/metrics?name=x".to_owned(), "name"),
    ] {
        let problem = problem_of(app.get(&path).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["field"], field, "{path}");
    }

    // Declared parameters pass, also percent-encoded; the documentation takes any query.
    let page = json_of(app.get("/api/v1/sessions?lim%69t=1&user_id=u1").await, StatusCode::OK).await;
    assert_eq!(page["sessions"].as_array().map(Vec::len), Some(1));
    json_of(app.get("/openapi.json?version=1").await, StatusCode::OK).await;
    // Without credentials, the credentials are what is wrong.
    let anonymous = reqwest::Client::new().get(app.url("/api/v1/sessions?offset=2")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
