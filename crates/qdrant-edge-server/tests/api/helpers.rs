//! Starting a server on port 0 in a fresh directory, and a client for it.

use std::net::SocketAddr;
use std::path::Path;

use contextiq_qdrant_edge_server::EdgeServer;
use qdrant_client::qdrant::{CreateCollectionBuilder, Distance, PointStruct, UpsertPointsBuilder, VectorParamsBuilder};
use qdrant_client::{Payload, Qdrant, QdrantError};
use tempfile::TempDir;

pub struct TestServer {
    pub server: EdgeServer,
    pub client: Qdrant,
    pub storage: TempDir,
}

pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub async fn spawn_server() -> TestServer {
    let storage = tempfile::tempdir().unwrap();
    let server = start(storage.path(), None).await;
    let client = client(&server.url(), None);
    TestServer { server, client, storage }
}

pub async fn start(storage: &Path, api_key: Option<&str>) -> EdgeServer {
    EdgeServer::start(any_port(), storage, api_key.map(str::to_owned)).await.unwrap()
}

/// A client without the compatibility check: that check blocks the calling thread on a health
/// check, which a current-thread test runtime serving the same server could not answer.
pub fn client(url: &str, api_key: Option<&str>) -> Qdrant {
    Qdrant::from_url(url).api_key(api_key.map(str::to_owned)).skip_compatibility_check().build().unwrap()
}

pub async fn create_collection(client: &Qdrant, name: &str, size: u64, distance: Distance) {
    client
        .create_collection(CreateCollectionBuilder::new(name).vectors_config(VectorParamsBuilder::new(size, distance)))
        .await
        .unwrap();
}

pub fn point(
    id: impl Into<qdrant_client::qdrant::PointId>,
    vector: Vec<f32>,
    payload: serde_json::Value,
) -> PointStruct {
    PointStruct::new(id, vector, Payload::try_from(payload).unwrap())
}

pub async fn upsert(client: &Qdrant, name: &str, points: Vec<PointStruct>) {
    client.upsert_points(UpsertPointsBuilder::new(name, points).wait(true)).await.unwrap();
}

/// The gRPC status of a failed call.
pub fn status<T: std::fmt::Debug>(result: Result<T, QdrantError>) -> tonic::Status {
    match result {
        Err(QdrantError::ResponseError { status }) => status,
        other => panic!("expected an error status, got {other:?}"),
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}
