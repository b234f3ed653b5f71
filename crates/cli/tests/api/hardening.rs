//! What a hostile-input review found: keys minted by keys, write-only credentials reading,
//! `user_id` outside the scope, ambiguous rate-limit buckets, repeated credentials, the
//! database's file modes, and backends that cannot serve.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{JWT_SECRET, create_key, spawn_app_with_jwt, token};
use crate::helpers::{
    backend_env, binary, client_with_key, client_with_token, id_of, json_of, problem_of, spawn_app, spawn_app_with,
    test_database_url,
};

/// A key minted by a key: no later expiry, no higher rate, revoked with its parent (and so
/// with its parent's parent).
#[tokio::test]
async fn minted_keys_never_outlive_or_outrun_their_parent_and_die_with_it() {
    let app = spawn_app().await;
    let (parent_key, parent_id) = create_key(
        &app,
        &app.client,
        json!({"name": "parent", "permissions": ["ADMIN"], "expires_in_seconds": 3600, "rate_limit_per_second": 50}),
    )
    .await;
    let parent = client_with_key(&parent_key);
    let parent_record = json_of(app.get(&format!("/api/v1/keys/{parent_id}")).await, StatusCode::OK).await;
    let mint = |body: Value| {
        let parent = parent.clone();
        let url = app.url("/api/v1/keys");
        async move { parent.post(url).json(&body).send().await.unwrap() }
    };

    // Nothing asked: the parent's expiry and rate.
    let child = json_of(mint(json!({"name": "child", "permissions": ["ADMIN"]})).await, StatusCode::CREATED).await;
    assert_eq!(child["expires_at"], parent_record["expires_at"]);
    assert_eq!(child["rate_limit_per_second"], 50);
    assert_eq!(child["parent_id"], json!(parent_id));

    // More than the parent has: refused.
    for (body, what) in [
        (json!({"name": "x", "permissions": ["ADMIN"], "expires_in_seconds": 7200}), "a later expiry"),
        (json!({"name": "x", "permissions": ["ADMIN"], "expires_at": "2099-01-01T00:00:00Z"}), "a far expiry"),
        (json!({"name": "x", "permissions": ["ADMIN"], "rate_limit_per_second": 51}), "a higher rate"),
    ] {
        let response = mint(body).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}");
        problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Rates have a ceiling for every creator.
    let response = app
        .post(
            "/api/v1/keys",
            &json!({"name": "x", "permissions": ["ADMIN"], "rate_limit_per_second": 4_294_967_295u64}),
        )
        .await;
    let problem = problem_of(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["field"], "rate_limit_per_second");

    // Less is fine.
    let slower = json_of(
        mint(json!({"name": "slower", "permissions": ["SESSION_READ"], "expires_in_seconds": 60, "rate_limit_per_second": 5}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(slower["rate_limit_per_second"], 5);

    // A grandchild, then the parent is revoked: its whole subtree stops working.
    let child_client = client_with_key(child["key"].as_str().unwrap());
    let grandchild = json_of(
        child_client
            .post(app.url("/api/v1/keys"))
            .json(&json!({"name": "grandchild", "permissions": ["SESSION_READ"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let grandchild_client = client_with_key(grandchild["key"].as_str().unwrap());
    json_of(grandchild_client.get(app.url("/api/v1/sessions")).send().await.unwrap(), StatusCode::OK).await;
    json_of(app.delete(&format!("/api/v1/keys/{parent_id}")).await, StatusCode::OK).await;
    for (who, client) in [("parent", &parent), ("child", &child_client), ("grandchild", &grandchild_client)] {
        let response = client.get(app.url("/api/v1/sessions")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "the {who} still works");
    }
    for key in [&child, &grandchild, &slower] {
        let record = json_of(app.get(&format!("/api/v1/keys/{}", id_of(key))).await, StatusCode::OK).await;
        assert!(record["revoked_at"].is_string(), "{record}");
    }
    // Keys made by others are untouched.
    json_of(app.get("/api/v1/sessions").await, StatusCode::OK).await;
}

/// A key revoked by the CLI works on for up to `AUTH_KEY_CACHE_SECONDS` in a running server;
/// a key it mints in that window must not survive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_elsewhere_cannot_mint_in_its_cached_window() {
    let app = spawn_app_with(|settings| settings.auth.key_cache_seconds = 3600).await;
    let (parent_key, parent_id) = create_key(&app, &app.client, json!({"name": "p", "permissions": ["ADMIN"]})).await;
    let parent = client_with_key(&parent_key);
    json_of(parent.get(app.url("/api/v1/sessions")).send().await.unwrap(), StatusCode::OK).await;
    let output = std::process::Command::new(binary())
        .envs(backend_env(app.data_dir.path()))
        .args(["keys", "revoke", &parent_id, "--data-dir"])
        .arg(app.data_dir.path())
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Still cached as usable here, but the store refuses the child.
    json_of(parent.get(app.url("/api/v1/sessions")).send().await.unwrap(), StatusCode::OK).await;
    let response = parent
        .post(app.url("/api/v1/keys"))
        .json(&json!({"name": "c", "permissions": ["ADMIN"]}))
        .send()
        .await
        .unwrap();
    problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;
}

/// A JWT's minted key expires with the token.
#[tokio::test]
async fn a_key_minted_with_a_jwt_expires_with_it() {
    let app = spawn_app_with_jwt().await;
    let jwt = token("default", "ops", &["ADMIN"], None, JWT_SECRET);
    let client = client_with_token(&jwt);
    let response = client
        .post(app.url("/api/v1/keys"))
        .json(&json!({"name": "k", "permissions": ["ADMIN"]}))
        .send()
        .await
        .unwrap();
    let created = json_of(response, StatusCode::CREATED).await;
    let expires_at: chrono::DateTime<chrono::Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires_at <= chrono::Utc::now() + chrono::Duration::seconds(600), "{created}");
    assert!(created["parent_id"].is_null());
}

/// Write-only credentials learn nothing from the answers of their writes, and an empty change
/// writes nothing.
#[tokio::test]
async fn write_only_credentials_get_receipts_and_empty_changes_write_nothing() {
    let app = spawn_app().await;
    let memory = json_of(
        app.post(
            "/api/v1/memories",
            &json!({"scope": {"user_id": "u1"}, "fact": "Allergic to peanuts", "metadata": {"secret": "s3"}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let memory_path = format!("/api/v1/memories/{}", id_of(&memory));
    let (writer_key, _) = create_key(&app, &app.client, json!({"name": "w", "permissions": ["MEMORY_WRITE"]})).await;
    let writer = client_with_key(&writer_key);

    for body in [json!({}), json!({"topic": "USER_PERSONAL_INFO"})] {
        let response = writer.patch(app.url(&memory_path)).json(&body).send().await.unwrap();
        let answer = json_of(response, StatusCode::OK).await;
        let fields: Vec<&str> = answer.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(fields, ["id", "updated_at"], "a receipt, not the memory: {answer}");
    }
    let revisions = json_of(app.get(&format!("{memory_path}/revisions")).await, StatusCode::OK).await;
    let revisions = revisions["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 2, "created, then the one real change: {revisions:?}");
    let revision_id = revisions[0]["id"].as_str().unwrap();
    let restored = json_of(
        writer
            .post(app.url(&format!("{memory_path}/restore")))
            .json(&json!({"revision_id": revision_id}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(restored.get("fact").is_none() && restored.get("metadata").is_none(), "{restored}");

    // An empty PATCH by a reader-writer: the memory as it is, unchanged.
    let before = json_of(app.get(&memory_path).await, StatusCode::OK).await;
    let response = app.client.patch(app.url(&memory_path)).json(&json!({})).send().await.unwrap();
    let after = json_of(response, StatusCode::OK).await;
    assert_eq!(after, before);
    let n_revisions = json_of(app.get(&format!("{memory_path}/revisions")).await, StatusCode::OK).await["revisions"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n_revisions, 3, "created, updated, restored; the empty patch wrote none");

    // Sessions: an empty merge patch from a SESSION_WRITE-only key shows no state.
    let session = app.create_session(&json!({"user_id": "u1", "state": {"card": "4111"}, "metadata": {"m": 1}})).await;
    let (session_writer_key, _) =
        create_key(&app, &app.client, json!({"name": "sw", "permissions": ["SESSION_WRITE"]})).await;
    let response = client_with_key(&session_writer_key)
        .patch(app.url(&format!("/api/v1/sessions/{}/state", id_of(&session))))
        .header("content-type", "application/merge-patch+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let answer = json_of(response, StatusCode::OK).await;
    assert!(answer.get("state").is_none() && answer.get("metadata").is_none(), "{answer}");
    let unchanged = json_of(app.get(&format!("/api/v1/sessions/{}", id_of(&session))).await, StatusCode::OK).await;
    assert_eq!(unchanged["updated_at"], session["updated_at"], "an empty patch bumps nothing");
    assert_eq!(answer["updated_at"], session["updated_at"]);
}

/// A session's `user_id` names the user of its scope and of a user-limited credential.
#[tokio::test]
async fn a_sessions_user_id_agrees_with_its_scope_and_the_credential() {
    let app = spawn_app().await;
    let (key, _) = create_key(
        &app,
        &app.client,
        json!({"name": "u1", "permissions": ["SESSION_READ", "SESSION_WRITE"], "scope": {"user_id": "u1"}}),
    )
    .await;
    let user = client_with_key(&key);
    for body in [
        json!({"user_id": "u2"}),
        json!({"user_id": "u2", "scope": {"user_id": "u1"}}),
        json!({"user_id": "u2", "scope": {"user_id": "u1", "app": "x"}}),
    ] {
        let response = user.post(app.url("/api/v1/sessions")).json(&body).send().await.unwrap();
        problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    json_of(
        user.post(app.url("/api/v1/sessions")).json(&json!({"user_id": "u1"})).send().await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let response = app.post("/api/v1/sessions", &json!({"user_id": "u1", "scope": {"user_id": "u2"}})).await;
    let problem = problem_of(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["field"], "user_id");
    // A scope without a user_id may carry any user_id, for credentials without a user limit.
    app.create_session(&json!({"user_id": "u3", "scope": {"team": "t"}})).await;
    let listed = json_of(app.get("/api/v1/sessions?user_id=u2").await, StatusCode::OK).await;
    assert!(listed["sessions"].as_array().unwrap().is_empty(), "{listed}");
}

/// `tenant:b` + `c` and `tenant` + `b:c` once shared one bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_buckets_of_two_orgs_never_collide() {
    let app = spawn_app_with(|settings| {
        settings.auth.jwt_secret_key = Some(secrecy::SecretString::from(JWT_SECRET));
        settings.auth.rate_limit_per_second = 1;
        settings.auth.rate_limit_burst = 2;
    })
    .await;
    let first = client_with_token(&token("tenant:b", "c", &["SESSION_READ"], None, JWT_SECRET));
    let second = client_with_token(&token("tenant", "b:c", &["SESSION_READ"], None, JWT_SECRET));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(first.get(app.url("/api/v1/sessions")).send().await.unwrap().status());
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let response = second.get(app.url("/api/v1/sessions")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "another org's user has its own bucket");
}

/// No rate limit unless one is configured; with authentication off and a limit configured,
/// each client address has its own bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_are_off_and_anonymous_clients_are_limited_per_address() {
    let app = spawn_app_with(|settings| settings.auth = Default::default()).await;
    let requests = (0..300).map(|_| {
        let client = app.client.clone();
        let url = app.url("/api/v1/sessions");
        tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
    });
    for status in futures::future::join_all(requests).await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }

    let app = spawn_app_with(|settings| {
        settings.auth.require_auth = false;
        settings.auth.rate_limit_per_second = 1;
        settings.auth.rate_limit_burst = 2;
    })
    .await;
    let client_at =
        |address: [u8; 4]| reqwest::Client::builder().local_address(std::net::IpAddr::from(address)).build().unwrap();
    let first = client_at([127, 0, 0, 1]);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(first.get(app.url("/api/v1/sessions")).send().await.unwrap().status());
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let second = client_at([127, 0, 0, 2]);
    assert_eq!(second.get(app.url("/api/v1/sessions")).send().await.unwrap().status(), StatusCode::OK);
}

/// Which of two credentials would count is a guess: the request is refused.
#[tokio::test]
async fn repeated_or_conflicting_credentials_are_400() {
    let app = spawn_app_with_jwt().await;
    let jwt = token("default", "alice", &["SESSION_READ"], None, JWT_SECRET);
    let anonymous = reqwest::Client::new();
    let url = app.url("/api/v1/sessions");
    let requests = [
        anonymous.get(&url).header("x-api-key", &app.admin_key).header("x-api-key", "ck_other"),
        anonymous.get(&url).header("x-api-key", &app.admin_key).header("x-api-key", &app.admin_key),
        anonymous.get(&url).header("x-api-key", &app.admin_key).header("authorization", format!("Bearer {jwt}")),
        anonymous.get(&url).header("authorization", format!("Bearer {jwt}")).header("authorization", "Bearer x"),
    ];
    for request in requests {
        problem_of(request.send().await.unwrap(), StatusCode::BAD_REQUEST, "conflicting_credentials").await;
    }
}

/// The data directory is the owner's alone (0700), and so are the database files (0600).
#[cfg(unix)]
#[tokio::test]
async fn the_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    if test_database_url(root.path()).await.is_some() {
        return; // The conformance run's primary store is PostgreSQL: no database file.
    }
    let data_dir = root.path().join("fresh").join("data");
    let settings_dir = data_dir.clone();
    let app = spawn_app_with(move |settings| settings.data_dir = settings_dir).await;
    let client = client_with_key(&crate::helpers::admin_key(&data_dir));
    let response = client.post(app.url("/api/v1/sessions")).json(&json!({"user_id": "u1"})).send().await.unwrap();
    json_of(response, StatusCode::CREATED).await;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir), 0o700);
    for name in ["contextiq.db", "contextiq.db-wal", "contextiq.db-shm"] {
        assert_eq!(mode(&data_dir.join(name)), 0o600, "{name}");
    }
}

/// A database another process holds locked past the busy timeout: 503 with `Retry-After`,
/// never 500; and writes work again once it lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_is_a_503_not_a_500() {
    use sqlx::Connection;
    let app = spawn_app().await;
    if test_database_url(app.data_dir.path()).await.is_some() {
        return; // The conformance run's primary store is PostgreSQL; see the outage test.
    }
    let path = app.data_dir.path().join("contextiq.db");
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();
    let response = app.post("/api/v1/sessions", &json!({"user_id": "u1"})).await;
    let retry_after = response.headers().get("retry-after").cloned();
    problem_of(response, StatusCode::SERVICE_UNAVAILABLE, "store_unavailable").await;
    assert!(retry_after.is_some());
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    app.create_session(&json!({"user_id": "u1"})).await;
}

/// PostgreSQL stopped (immediate mode, as a crash) in the middle of a burst of appends and
/// memory writes, then started again: every request in between is a 503 (never a 500), the
/// server recovers by itself, and every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_outage_under_load_is_503s_and_loses_nothing() {
    let Some(postgres) = crate::private_postgres::PrivatePostgres::start() else {
        return;
    };
    let url = postgres.url();
    let app = spawn_app_with(move |settings| {
        settings.database.url = Some(url.into());
        settings.database.pool_size = 4;
        settings.database.max_overflow = 4;
        // A generation loop or a relay is not under test; the requests are.
        settings.redis.url = None;
        settings.rabbitmq.url = None;
        settings.qdrant.url = None;
    })
    .await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|writer| {
            let client = app.client.clone();
            let events_url = app.url(&format!("/api/v1/sessions/{session_id}/events"));
            let memories_url = app.url("/api/v1/memories");
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut statuses = Vec::new();
                for index in 0..100_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let content = format!("w{writer}-{index}");
                    let response = match index % 4 {
                        3 => client.post(&memories_url).json(&json!({"scope": {"user_id": "u1"}, "fact": content})),
                        _ => client.post(&events_url).json(&json!({"author": "user", "content": content})),
                    }
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await;
                    let Ok(response) = response else { continue };
                    let status = response.status();
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        assert!(response.headers().get("retry-after").is_some());
                        let problem: Value = response.json().await.unwrap();
                        assert_eq!(problem["code"], "store_unavailable", "{problem}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    } else if status.is_success() {
                        acknowledged.push((index % 4 == 3, content));
                    }
                    statuses.push(status);
                }
                (acknowledged, statuses)
            })
        })
        .collect();
    // Some writes, then the crash; longer down than the pool waits for a connection (10 s), so
    // requests are refused rather than held; then the restart and some more writes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    postgres.stop_immediately();
    tokio::time::sleep(Duration::from_secs(12)).await;
    postgres.start_again();
    let recovered = async {
        loop {
            let response = app
                .post(&format!("/api/v1/sessions/{session_id}/events"), &json!({"author": "probe", "content": "x"}))
                .await;
            if response.status().is_success() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), recovered).await.expect("the server recovers by itself");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut acknowledged = Vec::new();
    let mut statuses = Vec::new();
    for writer in writers {
        let (writes, seen) = writer.await.unwrap();
        acknowledged.extend(writes);
        statuses.extend(seen);
    }
    let server_errors: Vec<_> = statuses
        .iter()
        .filter(|status| status.is_server_error() && **status != StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(server_errors.is_empty(), "{server_errors:?}");
    assert!(statuses.contains(&StatusCode::SERVICE_UNAVAILABLE), "the outage was seen");

    let events = crate::helpers::all_events(&app.client, &app.address, &session_id).await;
    let stored: std::collections::HashSet<&str> = events.iter().filter_map(|event| event["content"].as_str()).collect();
    let mut facts = std::collections::HashSet::new();
    let mut cursor = String::new();
    loop {
        let page = json_of(
            app.get(&format!("/api/v1/memories?scope=%7B%22user_id%22%3A%22u1%22%7D&limit=100{cursor}")).await,
            StatusCode::OK,
        )
        .await;
        facts.extend(
            page["memories"].as_array().unwrap().iter().map(|memory| memory["fact"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    for (is_memory, content) in &acknowledged {
        let found = if *is_memory { facts.contains(content) } else { stored.contains(content.as_str()) };
        assert!(found, "acknowledged but lost: {content}");
    }
}

/// An existing data directory others can read is left as it is, with a warning at start.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_open_to_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = tempfile::tempdir().unwrap();
    if test_database_url(data_dir.path()).await.is_some() {
        return; // The conformance run's primary store is PostgreSQL: no database file.
    }
    std::fs::set_permissions(data_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = crate::process::ServerProcess::start_with(data_dir.path(), &[]);
    let warned = server.log_lines().iter().any(|line| {
        line["level"] == "WARN"
            && line["message"].as_str().is_some_and(|message| message.contains("open to other users"))
    });
    assert!(warned, "{:?}", server.log_lines());
    let mode = std::fs::metadata(data_dir.path().join("contextiq.db")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
