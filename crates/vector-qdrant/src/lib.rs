//! Memory vectors in Qdrant: the [`VectorIndex`] of the distributed deployment.
//!
//! One collection (`memories` by default) holds one unnamed dense vector per memory, keyed by
//! the memory's UUID, with cosine distance. Each point's payload carries its org and canonical
//! scope key, both with keyword payload indexes (the org one marked as the tenant key), so every
//! search is filtered by them on the server and never sees another tenant's or scope's vectors.
//! Qdrant answers small filtered sets by exact scan through the payload index and large ones
//! through HNSW (`full_scan_threshold`).

use std::time::Duration;

use async_trait::async_trait;
use contextiq_core::{Error, OrgId, Result, VectorIndex, VectorRecord};
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, Filter, HnswConfigDiffBuilder, KeywordIndexParamsBuilder, PointId, PointStruct, PointsIdsList,
    Query, QueryPointsBuilder, SearchParamsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use uuid::Uuid;

const ORG_FIELD: &str = "org_id";
const SCOPE_FIELD: &str = "scope_key";

#[derive(Debug, Clone)]
pub struct QdrantOptions {
    /// The gRPC endpoint, e.g. `http://localhost:6334`.
    pub url: String,
    pub api_key: Option<String>,
    /// The longest one request may take.
    pub timeout: Duration,
    pub collection: String,
    /// HNSW edges per node when the collection is created.
    pub hnsw_m: u64,
    /// HNSW build-time candidate list when the collection is created.
    pub hnsw_ef_construct: u64,
    /// Filtered sets smaller than this (in KiB of vectors) are scanned exactly.
    pub full_scan_threshold: u64,
    /// HNSW search-time candidate list; 0 leaves it to Qdrant (`ef_construct`).
    pub search_hnsw_ef: u64,
}

impl QdrantOptions {
    pub fn new(url: impl Into<String>) -> QdrantOptions {
        QdrantOptions {
            url: url.into(),
            api_key: None,
            timeout: Duration::from_secs(60),
            collection: "memories".to_owned(),
            hnsw_m: 16,
            hnsw_ef_construct: 100,
            full_scan_threshold: 10_000,
            search_hnsw_ef: 0,
        }
    }
}

/// Why Qdrant failed; mapped to the domain's store error.
#[derive(Debug, thiserror::Error)]
pub enum QdrantIndexError {
    #[error("Qdrant: {0}")]
    Client(#[from] QdrantError),
    #[error("Qdrant answered without {0}")]
    MissingField(&'static str),
    #[error("Qdrant returned a point id that is not a UUID: {0}")]
    ForeignPoint(String),
}

impl From<QdrantIndexError> for Error {
    fn from(err: QdrantIndexError) -> Error {
        Error::Store(Box::new(err))
    }
}

pub struct QdrantIndex {
    client: Qdrant,
    options: QdrantOptions,
}

impl QdrantIndex {
    /// A client of the server at `options.url`; connections are made lazily, so this succeeds
    /// while Qdrant is down.
    pub fn connect(options: QdrantOptions) -> Result<QdrantIndex> {
        let client = Qdrant::from_url(&options.url)
            .api_key(options.api_key.clone())
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            // The check is one more request at start and only logs a warning.
            .skip_compatibility_check()
            .build()
            .map_err(QdrantIndexError::from)?;
        Ok(QdrantIndex { client, options })
    }

    pub fn collection(&self) -> &str {
        &self.options.collection
    }

    /// Whether Qdrant is done optimizing the collection (status green), and how many of its
    /// vectors are in HNSW segments, out of how many.
    pub async fn indexing_progress(&self) -> Result<(bool, u64, u64)> {
        let info = self.client.collection_info(&self.options.collection).await.map_err(QdrantIndexError::from)?;
        let info = info.result.ok_or(QdrantIndexError::MissingField("the collection's info"))?;
        let green = info.status == qdrant_client::qdrant::CollectionStatus::Green as i32;
        Ok((green, info.indexed_vectors_count.unwrap_or_default(), info.points_count.unwrap_or_default()))
    }

    /// The dimension of the collection's vectors, `None` when it does not exist.
    async fn existing_dimension(&self) -> Result<Option<u64>> {
        let name = &self.options.collection;
        if !self.client.collection_exists(name).await.map_err(QdrantIndexError::from)? {
            return Ok(None);
        }
        let info = self.client.collection_info(name).await.map_err(QdrantIndexError::from)?;
        let vectors = info
            .result
            .and_then(|info| info.config)
            .and_then(|config| config.params)
            .and_then(|params| params.vectors_config)
            .and_then(|vectors| vectors.config)
            .ok_or(QdrantIndexError::MissingField("the collection's vector parameters"))?;
        match vectors {
            VectorsConfigKind::Params(params) => Ok(Some(params.size)),
            VectorsConfigKind::ParamsMap(_) => Err(Error::validation(
                "qdrant.collection",
                format!("the Qdrant collection `{name}` has named vectors; ContextIQ needs one unnamed vector"),
            )),
        }
    }

    async fn create(&self, dimension: usize) -> Result<()> {
        let options = &self.options;
        let hnsw = HnswConfigDiffBuilder::default()
            .m(options.hnsw_m)
            .ef_construct(options.hnsw_ef_construct)
            .full_scan_threshold(options.full_scan_threshold);
        let created = self
            .client
            .create_collection(
                CreateCollectionBuilder::new(&options.collection)
                    .vectors_config(VectorParamsBuilder::new(dimension as u64, Distance::Cosine))
                    .hnsw_config(hnsw),
            )
            .await;
        if let Err(err) = created {
            // Another process may have created it first; then it must only have our dimension.
            match self.existing_dimension().await? {
                Some(_) => tracing::debug!(error = %err, "the Qdrant collection was created concurrently"),
                None => return Err(QdrantIndexError::from(err).into()),
            }
        }
        self.create_payload_indexes().await
    }

    async fn create_payload_indexes(&self) -> Result<()> {
        let name = &self.options.collection;
        let org_index = CreateFieldIndexCollectionBuilder::new(name, ORG_FIELD, FieldType::Keyword)
            .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
            .wait(true);
        self.client.create_field_index(org_index).await.map_err(QdrantIndexError::from)?;
        let scope_index = CreateFieldIndexCollectionBuilder::new(name, SCOPE_FIELD, FieldType::Keyword).wait(true);
        self.client.create_field_index(scope_index).await.map_err(QdrantIndexError::from)?;
        Ok(())
    }
}

#[async_trait]
impl VectorIndex for QdrantIndex {
    async fn ensure(&self, dimension: usize) -> Result<bool> {
        match self.existing_dimension().await? {
            Some(size) if size == dimension as u64 => {
                // Cheap when they exist; creates them on a collection made by hand.
                self.create_payload_indexes().await?;
                Ok(false)
            }
            Some(size) => Err(Error::validation(
                "embedding_model",
                format!(
                    "the Qdrant collection `{}` holds {size}-dimensional vectors but the embedding model makes \
                     {dimension}; run `contextiq reindex` to rebuild it",
                    self.options.collection
                ),
            )),
            None => {
                self.create(dimension).await?;
                Ok(true)
            }
        }
    }

    async fn recreate(&self, dimension: usize) -> Result<()> {
        self.client.delete_collection(&self.options.collection).await.map_err(QdrantIndexError::from)?;
        self.create(dimension).await
    }

    async fn upsert(&self, records: &[VectorRecord]) -> Result<()> {
        let points: Vec<PointStruct> = records
            .iter()
            .map(|record| {
                let mut payload = Payload::new();
                payload.insert(ORG_FIELD, record.org_id.as_str());
                payload.insert(SCOPE_FIELD, record.scope_key.as_str());
                PointStruct::new(record.memory_id, record.embedding.clone(), payload)
            })
            .collect();
        let upsert = UpsertPointsBuilder::new(&self.options.collection, points).wait(true);
        self.client.upsert_points(upsert).await.map_err(QdrantIndexError::from)?;
        Ok(())
    }

    async fn remove(&self, ids: &[Uuid]) -> Result<()> {
        let ids: Vec<PointId> = ids.iter().map(|id| PointId::from(*id)).collect();
        let delete = DeletePointsBuilder::new(&self.options.collection).points(PointsIdsList { ids }).wait(true);
        self.client.delete_points(delete).await.map_err(QdrantIndexError::from)?;
        Ok(())
    }

    async fn search(&self, org: &OrgId, scope_key: &str, vector: &[f32], limit: usize) -> Result<Vec<(Uuid, f64)>> {
        let filter = Filter::must([
            Condition::matches(ORG_FIELD, org.as_str().to_owned()),
            Condition::matches(SCOPE_FIELD, scope_key.to_owned()),
        ]);
        let mut query = QueryPointsBuilder::new(&self.options.collection)
            .query(Query::new_nearest(vector.to_vec()))
            .filter(filter)
            .limit(limit as u64);
        if self.options.search_hnsw_ef > 0 {
            query = query.params(SearchParamsBuilder::default().hnsw_ef(self.options.search_hnsw_ef));
        }
        let found = self.client.query(query).await.map_err(QdrantIndexError::from)?;
        found.result.into_iter().map(|point| Ok((memory_id(point.id)?, f64::from(point.score)))).collect()
    }

    async fn count(&self) -> Result<u64> {
        let counted = self
            .client
            .count(CountPointsBuilder::new(&self.options.collection).exact(true))
            .await
            .map_err(QdrantIndexError::from)?;
        Ok(counted.result.map(|result| result.count).unwrap_or_default())
    }
}

fn memory_id(id: Option<PointId>) -> Result<Uuid> {
    match id.and_then(|id| id.point_id_options) {
        Some(PointIdOptions::Uuid(text)) => {
            Uuid::parse_str(&text).map_err(|_| QdrantIndexError::ForeignPoint(text).into())
        }
        Some(PointIdOptions::Num(number)) => Err(QdrantIndexError::ForeignPoint(number.to_string()).into()),
        None => Err(QdrantIndexError::MissingField("a point id").into()),
    }
}
