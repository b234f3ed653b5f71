//! The local model against reference similarities, and the OpenAI protocol against a local
//! server speaking it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use contextiq_core::Embedder;
use contextiq_core::embed::cosine;
use contextiq_models::{LocalEmbedder, MODEL_FILES, ModelError, OpenAiEmbedder, OpenAiOptions, RUNTIME_LIBRARY};
use serde_json::{Value, json};

fn model_dir() -> PathBuf {
    std::env::var_os("EMBEDDING_MODEL_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2"))
}

fn local() -> LocalEmbedder {
    LocalEmbedder::load(&model_dir()).unwrap_or_else(|err| panic!("{err}"))
}

#[tokio::test]
async fn local_model_matches_the_reference_similarities() {
    let embedder = local();
    assert_eq!(embedder.dimension(), 384);
    let texts =
        ["I love hiking in the Alps", "My favourite sport is mountaineering", "The quarterly tax report is due"];
    let vectors = embedder.embed(texts.iter().map(|text| text.to_string()).collect()).await.unwrap();
    for vector in &vectors {
        assert_eq!(vector.len(), 384);
        assert!((cosine(vector, vector) - 1.0).abs() < 1e-5, "vectors are unit length");
    }
    let check =
        |similarity: f32, expect: f32| assert!((similarity - expect).abs() < 0.0005, "{similarity} vs {expect}");
    check(cosine(&vectors[0], &vectors[1]), 0.6119);
    check(cosine(&vectors[0], &vectors[2]), -0.0308);
}

#[tokio::test]
async fn padding_does_not_change_a_vector() {
    let embedder = local();
    let short = "I moved to Lisbon".to_owned();
    let long = "word ".repeat(400);
    let alone = embedder.embed(vec![short.clone()]).await.unwrap();
    let batched = embedder.embed(vec![long, short]).await.unwrap();
    assert!(cosine(&alone[0], &batched[1]) > 0.99999, "a sentence embeds the same alone and beside a long one");
    assert_eq!(embedder.embed(Vec::new()).await.unwrap().len(), 0);
}

#[test]
fn a_missing_model_says_how_to_fetch_it() {
    let empty = tempfile::tempdir().unwrap();
    let err = LocalEmbedder::load(empty.path()).err().expect("no model there");
    assert!(matches!(err, ModelError::Missing { .. }));
    assert!(err.to_string().contains("scripts/fetch-model.sh"), "{err}");

    // The model without the runtime that runs it: the library is named.
    let no_runtime = tempfile::tempdir().unwrap();
    for file in MODEL_FILES.iter().filter(|file| **file != RUNTIME_LIBRARY) {
        std::os::unix::fs::symlink(model_dir().join(file).canonicalize().unwrap(), no_runtime.path().join(file))
            .unwrap();
    }
    let err = LocalEmbedder::load(no_runtime.path()).err().expect("no runtime there");
    assert!(matches!(&err, ModelError::Missing { missing, .. } if missing == RUNTIME_LIBRARY), "{err}");
    assert!(err.to_string().contains("ONNX Runtime"), "{err}");
}

/// A server speaking the OpenAI embeddings protocol; records what it was sent.
async fn fake_openai(dimension: usize) -> (String, Arc<Mutex<Vec<(HeaderMap, Value)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let app = axum::Router::new().route(
        "/v1/embeddings",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let recorder = recorder.clone();
            async move {
                recorder.lock().unwrap().push((headers.clone(), body.clone()));
                if body["model"] == "broken" {
                    return (StatusCode::TOO_MANY_REQUESTS, Json(json!({"error": {"message": "quota exceeded"}})));
                }
                let inputs = body["input"].as_array().cloned().unwrap_or_default();
                // Out of order, unnormalised: the client must sort by index and normalise.
                let data: Vec<Value> = inputs
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(index, input)| {
                        let mut embedding = vec![0.0f32; dimension];
                        embedding[input.as_str().unwrap().len() % dimension] = 3.0;
                        json!({"object": "embedding", "index": index, "embedding": embedding})
                    })
                    .collect();
                (StatusCode::OK, Json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/v1"), seen)
}

fn options(base_url: &str, model: &str, dimension: usize) -> OpenAiOptions {
    OpenAiOptions {
        base_url: base_url.to_owned(),
        model: model.to_owned(),
        api_key: Some("sk-test".to_owned().into()),
        dimension,
        send_dimensions: true,
        batch_size: 2,
    }
}

#[tokio::test]
async fn openai_compatible_embeddings() {
    let (base_url, seen) = fake_openai(8).await;
    let embedder = OpenAiEmbedder::new(options(&base_url, "text-embedding-3-small", 8)).unwrap();
    assert_eq!(embedder.model_id(), "openai:text-embedding-3-small:8");
    let vectors = embedder.embed(vec!["a".into(), "bb".into(), "ccc".into()]).await.unwrap();
    assert_eq!(vectors.len(), 3);
    for (vector, expected_hot) in vectors.iter().zip([1, 2, 3]) {
        assert_eq!(vector[expected_hot], 1.0, "ordered by index and normalised: {vector:?}");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "batches of two");
    assert_eq!(seen[0].1, json!({"model": "text-embedding-3-small", "input": ["a", "bb"], "dimensions": 8}));
    assert_eq!(seen[0].0["authorization"], "Bearer sk-test");
    assert_eq!(seen[0].0["api-key"], "sk-test");
}

#[tokio::test]
async fn openai_failures_are_errors_never_empty_results() {
    let (base_url, _) = fake_openai(8).await;
    let wrong_size = OpenAiEmbedder::new(options(&base_url, "m", 16)).unwrap();
    let err = wrong_size.embed(vec!["a".into()]).await.unwrap_err();
    assert!(err.to_string().contains("dimensions"), "{err}");
    let broken = OpenAiEmbedder::new(options(&base_url, "broken", 8)).unwrap();
    let err = broken.embed(vec!["a".into()]).await.unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    let unreachable = OpenAiEmbedder::new(options("http://127.0.0.1:1/v1", "m", 8)).unwrap();
    assert!(unreachable.embed(vec!["a".into()]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched_without_mixing_vectors() {
    let embedder = local();
    let texts: Vec<String> = (0..40).map(|n| format!("sentence number {n} about {}", "topic ".repeat(n % 7))).collect();
    let alone = embedder.embed_blocking(&texts).unwrap();
    let requests = texts.iter().map(|text| {
        let embedder = embedder.clone();
        let text = text.clone();
        tokio::spawn(async move { embedder.embed(vec![text]).await.unwrap().remove(0) })
    });
    let concurrent: Vec<Vec<f32>> = join_in_order(requests).await;
    for (idx, (a, b)) in alone.iter().zip(&concurrent).enumerate() {
        assert!(cosine(a, b) > 0.99999, "text {idx} got another text's vector");
    }
}

async fn join_in_order(handles: impl Iterator<Item = tokio::task::JoinHandle<Vec<f32>>>) -> Vec<Vec<f32>> {
    let mut vectors = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        vectors.push(handle.await.unwrap());
    }
    vectors
}
