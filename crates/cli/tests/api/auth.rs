//! Authentication, permissions, tenancy, scope constraints and rate limits.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::without_model::{spawn_app, spawn_app_with};
use crate::helpers::{TestApp, client_with_key, client_with_token, id_of, json_of, problem_of};

pub const JWT_SECRET: &str = "test-secret-that-is-long-enough-0123456789";

pub async fn spawn_app_with_jwt() -> TestApp {
    spawn_app_with(|settings| settings.auth.jwt_secret_key = Some(SecretString::from(JWT_SECRET))).await
}

/// A JWT as the seed defines it, signed with `secret` and `algorithm`.
pub fn token(org: &str, sub: &str, permissions: &[&str], scope: Option<Value>, secret: &str) -> String {
    token_with(
        json!({"sub": sub, "org_id": org, "email": format!("{sub}@example.com"), "name": sub,
        "permissions": permissions, "scope": scope, "iss": "contextiq", "exp": chrono::Utc::now().timestamp() + 600}),
        secret,
        jsonwebtoken::Algorithm::HS256,
    )
}

pub fn token_with(claims: Value, secret: &str, algorithm: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token")
}

/// Creates an API key through the REST API with `admin`; returns `(key, id)`.
pub async fn create_key(app: &TestApp, admin: &reqwest::Client, body: Value) -> (String, String) {
    let response = admin.post(app.url("/api/v1/keys")).json(&body).send().await.unwrap();
    let created = json_of(response, StatusCode::CREATED).await;
    (created["key"].as_str().unwrap().to_owned(), id_of(&created))
}

#[tokio::test]
async fn requests_without_valid_credentials_are_401_and_service_paths_are_open() {
    let app = spawn_app_with_jwt().await;
    let anonymous = reqwest::Client::new();
    let response = anonymous.get(app.url("/api/v1/sessions")).send().await.unwrap();
    assert!(response.headers().get("www-authenticate").is_some());
    problem_of(response, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    let response = anonymous.post(app.url("/api/v1/sessions")).json(&json!({"user_id": "u"})).send().await.unwrap();
    problem_of(response, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    for bad in [client_with_key("ck_not-a-real-key"), client_with_key("nonsense"), client_with_token("not.a.jwt")] {
        problem_of(
            bad.get(app.url("/api/v1/sessions")).send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    let response =
        anonymous.get(app.url("/api/v1/sessions")).header("authorization", "Basic dTpw").send().await.unwrap();
    problem_of(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    for path in ["/health", "/health/ready", "/metrics", "/openapi.json", "/docs/"] {
        assert_eq!(anonymous.get(app.url(path)).send().await.unwrap().status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_first_admin_key_is_saved_privately() {
    let app = spawn_app().await;
    let path = app.data_dir.path().join(contextiq_server::startup::ADMIN_KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(app.admin_key.starts_with("ck_") && app.admin_key.len() >= 46, "{}", app.admin_key);
    let keys = json_of(app.get("/api/v1/keys").await, StatusCode::OK).await;
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["name"], "bootstrap-admin");
    let listed = keys[0].to_string();
    assert!(!listed.contains(&app.admin_key[3..]), "a listed key must not reveal the key: {listed}");
}

#[tokio::test]
async fn jwts_are_verified_strictly() {
    let app = spawn_app_with_jwt().await;
    let all = ["SESSION_READ", "SESSION_WRITE"];
    let good = token("default", "alice", &all, None, JWT_SECRET);
    let response = client_with_token(&good)
        .post(app.url("/api/v1/sessions"))
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap();
    json_of(response, StatusCode::CREATED).await;

    let now = chrono::Utc::now().timestamp();
    let claims = |overrides: Value| {
        let mut claims =
            json!({"sub": "alice", "org_id": "default", "permissions": all, "iss": "contextiq", "exp": now + 600});
        claims.as_object_mut().unwrap().extend(overrides.as_object().unwrap().clone());
        claims
    };
    let hs256 = |claims: Value| token_with(claims, JWT_SECRET, jsonwebtoken::Algorithm::HS256);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(json!({})).to_string())
    );
    let rejected = [
        ("wrong secret", token("default", "alice", &all, None, "another-secret-that-is-long-enough-012345")),
        ("alg none", unsigned),
        ("HS512", token_with(claims(json!({})), JWT_SECRET, jsonwebtoken::Algorithm::HS512)),
        ("expired", token_with(claims(json!({"exp": now - 3600})), JWT_SECRET, jsonwebtoken::Algorithm::HS256)),
        ("wrong issuer", token_with(claims(json!({"iss": "evil"})), JWT_SECRET, jsonwebtoken::Algorithm::HS256)),
        ("no exp", {
            let mut no_exp = claims(json!({}));
            no_exp.as_object_mut().unwrap().remove("exp");
            token_with(no_exp, JWT_SECRET, jsonwebtoken::Algorithm::HS256)
        }),
        ("unknown permission", token("default", "alice", &["ROOT"], None, JWT_SECRET)),
        ("tampered", format!("{}x", &good[..good.len() - 1])),
        ("not valid before an hour from now", hs256(claims(json!({"nbf": now + 3600})))),
        ("issuer as a list", hs256(claims(json!({"iss": ["contextiq"]})))),
        ("an unknown critical header", {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.crit = Some(vec!["exp-in-ms".to_owned()]);
            let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
            jsonwebtoken::encode(&header, &claims(json!({})), &key).unwrap()
        }),
        // A scope of a thousand keys once reached SQLite as a thousand nested conditions (500).
        ("a scope of 1,000 keys", {
            let scope: serde_json::Map<String, Value> =
                (0..1000).map(|index| (format!("k{index}"), json!("v"))).collect();
            hs256(claims(json!({"scope": scope})))
        }),
        ("a scope key of 65 characters", hs256(claims(json!({"scope": {"k".repeat(65): "v"}})))),
        ("a scope value of 10,000 characters", hs256(claims(json!({"scope": {"user_id": "v".repeat(10_000)}})))),
        ("an org_id of 129 characters", hs256(claims(json!({"org_id": "o".repeat(129)})))),
        ("a sub of 257 characters", hs256(claims(json!({"sub": "s".repeat(257)})))),
    ];
    for (what, bad) in rejected {
        let response = client_with_token(&bad).get(app.url("/api/v1/sessions")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        problem_of(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }

    // Without a configured secret, no JWT is accepted.
    let no_jwt = spawn_app().await;
    let response = client_with_token(&good).get(no_jwt.url("/api/v1/sessions")).send().await.unwrap();
    problem_of(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn permissions_are_checked_per_endpoint() {
    let app = spawn_app().await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    let (reader_key, _) =
        create_key(&app, &app.client, json!({"name": "reader", "permissions": ["SESSION_READ"]})).await;
    let (writer_key, _) =
        create_key(&app, &app.client, json!({"name": "writer", "permissions": ["SESSION_WRITE"]})).await;
    let (memory_key, _) =
        create_key(&app, &app.client, json!({"name": "memory", "permissions": ["MEMORY_READ", "MEMORY_WRITE"]})).await;
    let reader = client_with_key(&reader_key);
    let writer = client_with_key(&writer_key);
    let memory = client_with_key(&memory_key);

    let session_path = app.url(&format!("/api/v1/sessions/{session_id}"));
    let events_path = format!("{session_path}/events");
    json_of(reader.get(&session_path).send().await.unwrap(), StatusCode::OK).await;
    json_of(reader.get(&events_path).send().await.unwrap(), StatusCode::OK).await;
    json_of(reader.get(app.url("/api/v1/sessions")).send().await.unwrap(), StatusCode::OK).await;
    let event = json!({"author": "u", "content": "x"});
    for response in [
        reader.post(app.url("/api/v1/sessions")).json(&json!({"user_id": "u1"})).send().await.unwrap(),
        reader.post(&events_path).json(&event).send().await.unwrap(),
        reader.patch(format!("{session_path}/state")).json(&json!({"a": 1})).send().await.unwrap(),
        reader.delete(&session_path).send().await.unwrap(),
        writer.get(&session_path).send().await.unwrap(),
        writer.get(app.url("/api/v1/sessions")).send().await.unwrap(),
        memory.get(&session_path).send().await.unwrap(),
        memory.post(&events_path).json(&event).send().await.unwrap(),
        reader.get(app.url("/api/v1/keys")).send().await.unwrap(),
        writer
            .post(app.url("/api/v1/keys"))
            .json(&json!({"name": "x", "permissions": ["ADMIN"]}))
            .send()
            .await
            .unwrap(),
    ] {
        problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    json_of(writer.post(&events_path).json(&event).send().await.unwrap(), StatusCode::CREATED).await;
    json_of(
        writer.post(app.url("/api/v1/sessions")).json(&json!({"user_id": "u1"})).send().await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn keys_can_be_revoked_expire_and_never_exceed_their_creator() {
    let app = spawn_app().await;
    let (key, key_id) = create_key(&app, &app.client, json!({"name": "temp", "permissions": ["SESSION_READ"]})).await;
    let client = client_with_key(&key);
    json_of(client.get(app.url("/api/v1/sessions")).send().await.unwrap(), StatusCode::OK).await;
    let revoked = json_of(app.delete(&format!("/api/v1/keys/{key_id}")).await, StatusCode::OK).await;
    assert!(revoked["revoked_at"].is_string());
    problem_of(
        client.get(app.url("/api/v1/sessions")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let fetched = json_of(app.get(&format!("/api/v1/keys/{key_id}")).await, StatusCode::OK).await;
    assert_eq!(fetched["revoked_at"], revoked["revoked_at"]);
    problem_of(app.get("/api/v1/keys/not-a-uuid").await, StatusCode::NOT_FOUND, "api_key_not_found").await;

    let (short_lived, _) = create_key(
        &app,
        &app.client,
        json!({"name": "short", "permissions": ["SESSION_READ"], "expires_in_seconds": 1}),
    )
    .await;
    let client = client_with_key(&short_lived);
    json_of(client.get(app.url("/api/v1/sessions")).send().await.unwrap(), StatusCode::OK).await;
    app.clock.advance(std::time::Duration::from_millis(1100));
    problem_of(
        client.get(app.url("/api/v1/sessions")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    // A scope-limited admin cannot mint an unrestricted key or grant what it lacks.
    let (scoped_admin_key, _) = create_key(
        &app,
        &app.client,
        json!({"name": "scoped-admin", "permissions": ["ADMIN"], "scope": {"user_id": "u1"}}),
    )
    .await;
    let scoped_admin = client_with_key(&scoped_admin_key);
    let response = scoped_admin
        .post(app.url("/api/v1/keys"))
        .json(&json!({"name": "x", "permissions": ["SESSION_READ"], "scope": {"user_id": "u2"}}))
        .send()
        .await
        .unwrap();
    problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;
    let created = json_of(
        scoped_admin
            .post(app.url("/api/v1/keys"))
            .json(&json!({"name": "y", "permissions": ["SESSION_READ"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["scope"], json!({"user_id": "u1"}), "a scoped creator's key inherits its scope");
    let listed = json_of(scoped_admin.get(app.url("/api/v1/keys")).send().await.unwrap(), StatusCode::OK).await;
    let names: BTreeSet<&str> =
        listed["keys"].as_array().unwrap().iter().map(|key| key["name"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["scoped-admin", "y"]));
    let (reader_key, _) =
        create_key(&app, &app.client, json!({"name": "r", "permissions": ["SESSION_READ", "ADMIN"]})).await;
    assert!(!reader_key.is_empty());

    for (body, field) in [
        (json!({"name": "", "permissions": ["SESSION_READ"]}), "name"),
        (json!({"name": "x", "permissions": []}), "permissions"),
        (json!({"name": "x", "permissions": ["ROOT"]}), "permissions[0]"),
        (json!({"name": "x", "permissions": ["SESSION_READ"], "expires_in_seconds": 0}), "expires_in_seconds"),
        (json!({"name": "x", "permissions": ["SESSION_READ"], "expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"name": "x", "permissions": ["SESSION_READ"], "rate_limit_per_second": 0}), "rate_limit_per_second"),
    ] {
        let problem =
            problem_of(app.post("/api/v1/keys", &body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                .await;
        assert_eq!(problem["field"], field, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_under_concurrency() {
    let app = spawn_app().await;
    let (key, _) = create_key(
        &app,
        &app.client,
        json!({"name": "slow", "permissions": ["SESSION_READ"], "rate_limit_per_second": 1}),
    )
    .await;
    let client = client_with_key(&key);
    let started = std::time::Instant::now();
    let requests = (0..20).map(|_| {
        let client = client.clone();
        let url = app.url("/api/v1/sessions");
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    });
    let responses: Vec<_> = futures::future::join_all(requests).await.into_iter().map(Result::unwrap).collect();
    let elapsed = started.elapsed().as_secs_f64();
    let n_allowed = responses.iter().filter(|response| response.status() == StatusCode::OK).count();
    // Burst 2 (twice the per-key rate), plus at most one token per second that passed.
    assert!(n_allowed >= 2 && n_allowed as f64 <= 2.0 + elapsed.ceil(), "{n_allowed} allowed in {elapsed:.2} s");
    let limited = responses
        .into_iter()
        .find(|response| response.status() == StatusCode::TOO_MANY_REQUESTS)
        .expect("some were limited");
    let headers = limited.headers().clone();
    assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(headers["ratelimit-limit"], "2");
    assert_eq!(headers["ratelimit-remaining"], "0");
    problem_of(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // Other credentials have their own buckets.
    json_of(app.get("/api/v1/sessions").await, StatusCode::OK).await;
}

#[tokio::test]
async fn auth_can_be_turned_off_for_local_development() {
    let app = spawn_app_with(|settings| settings.auth.require_auth = false).await;
    let anonymous = reqwest::Client::new();
    let response = anonymous.post(app.url("/api/v1/sessions")).json(&json!({"user_id": "u1"})).send().await.unwrap();
    json_of(response, StatusCode::CREATED).await;
}

/// Two orgs, each with two scope-limited principals and an unrestricted one (API keys in one
/// org, JWTs in the other): against every endpoint and method, each sees exactly its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_matrix() {
    let app = spawn_app_with_jwt().await;
    let rw = ["SESSION_READ", "SESSION_WRITE", "MEMORY_READ", "MEMORY_WRITE"];
    struct Who {
        name: &'static str,
        org: &'static str,
        user: &'static str,
        scoped: bool,
        client: reqwest::Client,
        session_id: String,
        memory_id: String,
        job_id: String,
    }
    let mut principals = Vec::new();
    for (name, user, scope) in [("a-u1", "u1", Some("u1")), ("a-u2", "u2", Some("u2")), ("a-all", "shared", None)] {
        let mut body = json!({"name": name, "permissions": rw});
        if let Some(user) = scope {
            body["scope"] = json!({"user_id": user});
        }
        let (key, _) = create_key(&app, &app.client, body).await;
        principals.push(Who {
            name,
            org: "default",
            user,
            scoped: scope.is_some(),
            client: client_with_key(&key),
            session_id: String::new(),
            memory_id: String::new(),
            job_id: String::new(),
        });
    }
    for (name, user, scope) in [("b-u1", "u1", Some("u1")), ("b-u2", "u2", Some("u2")), ("b-all", "shared", None)] {
        let token = token("org-b", name, &rw, scope.map(|user| json!({"user_id": user})), JWT_SECRET);
        principals.push(Who {
            name,
            org: "org-b",
            user,
            scoped: scope.is_some(),
            client: client_with_token(&token),
            session_id: String::new(),
            memory_id: String::new(),
            job_id: String::new(),
        });
    }
    for who in &mut principals {
        let response =
            who.client.post(app.url("/api/v1/sessions")).json(&json!({"user_id": who.user})).send().await.unwrap();
        who.session_id = id_of(&json_of(response, StatusCode::CREATED).await);
        let memory = json!({"scope": {"user_id": who.user}, "fact": format!("{} keeps a secret", who.name)});
        let response = who.client.post(app.url("/api/v1/memories")).json(&memory).send().await.unwrap();
        who.memory_id = id_of(&json_of(response, StatusCode::CREATED).await);
        let generate = json!({"source_type": "session", "source_reference": who.session_id});
        let response = who.client.post(app.url("/api/v1/memories/generate")).json(&generate).send().await.unwrap();
        who.job_id = id_of(&json_of(response, StatusCode::ACCEPTED).await);
    }
    let sees = |who: &Who, owner: &Who| who.org == owner.org && (!who.scoped || who.user == owner.user);

    for who in &principals {
        // Creating outside its scope is forbidden; inside (a wider scope holding its pairs) is fine.
        if who.scoped {
            let other_user = if who.user == "u1" { "u2" } else { "u1" };
            let response = who
                .client
                .post(app.url("/api/v1/sessions"))
                .json(&json!({"user_id": other_user}))
                .send()
                .await
                .unwrap();
            problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;
            // Within its scope, but labelled as another user: forbidden too.
            let response = who
                .client
                .post(app.url("/api/v1/sessions"))
                .json(&json!({"user_id": other_user, "scope": {"user_id": who.user, "app": "x"}}))
                .send()
                .await
                .unwrap();
            problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;
            let response = who
                .client
                .post(app.url("/api/v1/sessions"))
                .json(&json!({"user_id": who.user, "scope": {"user_id": who.user, "app": "x"}}))
                .send()
                .await
                .unwrap();
            let extra = json_of(response, StatusCode::CREATED).await;
            let response =
                who.client.delete(app.url(&format!("/api/v1/sessions/{}", id_of(&extra)))).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
        }
        let listed =
            json_of(who.client.get(app.url("/api/v1/sessions?limit=100")).send().await.unwrap(), StatusCode::OK).await;
        let listed: BTreeSet<String> = listed["sessions"].as_array().unwrap().iter().map(id_of).collect();
        let expected: BTreeSet<String> =
            principals.iter().filter(|owner| sees(who, owner)).map(|owner| owner.session_id.clone()).collect();
        assert_eq!(listed, expected, "{} lists", who.name);

        for owner in &principals {
            let base = app.url(&format!("/api/v1/sessions/{}", owner.session_id));
            let context = format!("{} -> session of {}", who.name, owner.name);
            let responses = [
                who.client.get(&base).send().await.unwrap(),
                who.client.get(format!("{base}/events")).send().await.unwrap(),
                who.client
                    .post(format!("{base}/events"))
                    .json(&json!({"author": who.name, "content": "x"}))
                    .send()
                    .await
                    .unwrap(),
                who.client
                    .patch(format!("{base}/state"))
                    .json(&Value::Object([(who.name.to_owned(), Value::Bool(true))].into_iter().collect()))
                    .send()
                    .await
                    .unwrap(),
            ];
            for response in responses {
                if sees(who, owner) {
                    assert!(response.status().is_success(), "{context}: {}", response.status());
                } else {
                    problem_of(response, StatusCode::NOT_FOUND, "session_not_found").await;
                }
            }
            if !sees(who, owner) {
                let response = who.client.delete(&base).send().await.unwrap();
                problem_of(response, StatusCode::NOT_FOUND, "session_not_found").await;
            }

            let memory = app.url(&format!("/api/v1/memories/{}", owner.memory_id));
            let responses = [
                who.client.get(&memory).send().await.unwrap(),
                who.client.get(format!("{memory}/revisions")).send().await.unwrap(),
                who.client.patch(&memory).json(&json!({"confidence": 0.9})).send().await.unwrap(),
            ];
            for response in responses {
                if sees(who, owner) {
                    assert!(response.status().is_success(), "{context} (memory): {}", response.status());
                } else {
                    problem_of(response, StatusCode::NOT_FOUND, "memory_not_found").await;
                }
            }
            if !sees(who, owner) {
                for response in [
                    who.client.delete(&memory).send().await.unwrap(),
                    who.client.delete(format!("{memory}?purge=true")).send().await.unwrap(),
                    who.client
                        .post(format!("{memory}/restore"))
                        .json(&json!({"revision_id": owner.memory_id}))
                        .send()
                        .await
                        .unwrap(),
                ] {
                    problem_of(response, StatusCode::NOT_FOUND, "memory_not_found").await;
                }
            }
            let job = who.client.get(app.url(&format!("/api/v1/jobs/{}", owner.job_id))).send().await.unwrap();
            let generate = json!({"source_type": "session", "source_reference": owner.session_id});
            let generated = who.client.post(app.url("/api/v1/memories/generate")).json(&generate).send().await.unwrap();
            if sees(who, owner) {
                json_of(job, StatusCode::OK).await;
                json_of(generated, StatusCode::ACCEPTED).await;
            } else {
                problem_of(job, StatusCode::NOT_FOUND, "job_not_found").await;
                problem_of(generated, StatusCode::NOT_FOUND, "session_not_found").await;
            }
            let owner_scope = json!({"user_id": owner.user});
            let search = json!({"scope": owner_scope, "search_query": "keeps a secret", "top_k": 100});
            let found = json_of(
                who.client.post(app.url("/api/v1/memories/search")).json(&search).send().await.unwrap(),
                StatusCode::OK,
            )
            .await;
            let found: BTreeSet<String> =
                found["results"].as_array().unwrap().iter().map(|result| id_of(&result["memory"])).collect();
            assert_eq!(found.contains(&owner.memory_id), sees(who, owner), "{context}: search");
            assert!(
                principals.iter().filter(|other| found.contains(&other.memory_id)).all(|other| sees(who, other)),
                "{context}: search reached a memory out of reach"
            );
        }
        if who.scoped {
            let other_user = if who.user == "u1" { "u2" } else { "u1" };
            let memory = json!({"scope": {"user_id": other_user}, "fact": "planted"});
            let response = who.client.post(app.url("/api/v1/memories")).json(&memory).send().await.unwrap();
            problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;
        }
    }
    // Nothing a stranger tried reached a session: each holds only events of principals that see it.
    for owner in principals.iter().filter(|owner| owner.org == "default") {
        let session = json_of(app.get(&format!("/api/v1/sessions/{}", owner.session_id)).await, StatusCode::OK).await;
        let authors: BTreeSet<String> =
            session["events"].as_array().unwrap().iter().map(|e| e["author"].as_str().unwrap().to_owned()).collect();
        let expected: BTreeSet<String> =
            principals.iter().filter(|who| sees(who, owner)).map(|who| who.name.to_owned()).collect();
        assert_eq!(authors, expected, "writers of {}'s session", owner.name);
    }
    for who in &principals {
        let response =
            who.client.delete(app.url(&format!("/api/v1/sessions/{}", who.session_id))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{} deletes its own", who.name);
    }

    // Keys: an admin of one org cannot see or revoke another org's keys.
    let b_admin = client_with_token(&token("org-b", "b-admin", &["ADMIN"], None, JWT_SECRET));
    let (_, b_key_id) = create_key(&app, &b_admin, json!({"name": "b-key", "permissions": ["SESSION_READ"]})).await;
    problem_of(app.get(&format!("/api/v1/keys/{b_key_id}")).await, StatusCode::NOT_FOUND, "api_key_not_found").await;
    problem_of(app.delete(&format!("/api/v1/keys/{b_key_id}")).await, StatusCode::NOT_FOUND, "api_key_not_found").await;
    let a_keys = json_of(app.get("/api/v1/keys").await, StatusCode::OK).await;
    assert!(a_keys["keys"].as_array().unwrap().iter().all(|key| key["org_id"] == "default"));
    let b_keys = json_of(b_admin.get(app.url("/api/v1/keys")).send().await.unwrap(), StatusCode::OK).await;
    let b_names: Vec<&str> =
        b_keys["keys"].as_array().unwrap().iter().map(|key| key["name"].as_str().unwrap()).collect();
    assert_eq!(b_names, ["b-key"]);
}
