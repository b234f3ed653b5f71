//! The gRPC services: Qdrant's `Qdrant`, `Collections` and `Points` traits on the catalog.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use qdrant_client::qdrant as grpc;
use qdrant_client::qdrant::collections_server::Collections;
use qdrant_client::qdrant::points_selector::PointsSelectorOneOf;
use qdrant_client::qdrant::points_server::Points;
use qdrant_client::qdrant::qdrant_server::Qdrant;
use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_edge as edge;
use qdrant_edge::external::ordered_float::OrderedFloat;
use tonic::service::Interceptor;
use tonic::{Request, Response, Status};

use crate::convert::{
    check_dimension, dense_input_from_grpc, dense_vector_from_grpc, distance_from_grpc, distance_to_grpc,
    field_type_from_grpc, filter_from_grpc, key_from_grpc, optional_filter_from_grpc, payload_from_grpc,
    payload_schema_type_to_grpc, point_id_from_grpc, point_id_to_grpc, point_ids_from_grpc, record_to_grpc,
    scored_point_to_grpc, search_params_from_grpc, with_payload_from_grpc, with_vectors_from_grpc,
};
use crate::error::{EdgeError, EdgeResult};
use crate::storage::{Catalog, Collection, CollectionMeta, OptimizerState, count_points, validate_name};

/// The title and version the health check reports.
pub(crate) const TITLE: &str = "qdrant - vector search engine";
/// Within one minor version of qdrant-client 1.20, so the client's compatibility check passes.
pub(crate) const VERSION: &str = "1.20.0";

const DEFAULT_LIMIT: u64 = 10;
/// The engine's (and Qdrant's) optimizer defaults that `EdgeOptimizersConfig` does not expose.
const DEFAULT_DELETED_THRESHOLD: f64 = 0.2;
const DEFAULT_VACUUM_MIN_VECTOR_NUMBER: u64 = 1000;

/// Defines a service impl whose listed RPCs answer `Unimplemented`. The whole impl is built
/// here so `async_trait` sees the generated methods too.
macro_rules! service_impl {
    (
        impl $trait:ident for $ty:ty { $($implemented:tt)* }
        unimplemented { $($rpc:ident($req:ident) -> $resp:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl $trait for $ty {
            $($implemented)*

            $(
                async fn $rpc(
                    &self,
                    _request: Request<grpc::$req>,
                ) -> Result<Response<grpc::$resp>, Status> {
                    Err(EdgeError::unimplemented(concat!("the RPC ", stringify!($rpc))).into())
                }
            )*
        }
    };
}

/// Checks the `api-key` header (or `authorization: Bearer`) when a key is configured.
#[derive(Clone)]
pub(crate) struct ApiKeyCheck {
    api_key: Option<Arc<str>>,
}

impl ApiKeyCheck {
    pub(crate) fn new(api_key: Option<String>) -> ApiKeyCheck {
        ApiKeyCheck { api_key: api_key.map(Arc::from) }
    }
}

impl Interceptor for ApiKeyCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.api_key else {
            return Ok(request);
        };
        let metadata = request.metadata();
        let api_key = metadata.get("api-key").map(|value| value.as_bytes());
        let bearer = metadata.get("authorization").and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
        match api_key.or(bearer) {
            None => Err(Status::unauthenticated("Must provide an API key or an Authorization bearer token")),
            Some(given) if given == expected.as_bytes() => Ok(request),
            Some(_) => Err(Status::unauthenticated("Invalid API key or JWT")),
        }
    }
}

pub(crate) struct HealthService;

#[tonic::async_trait]
impl Qdrant for HealthService {
    async fn health_check(
        &self,
        _request: Request<grpc::HealthCheckRequest>,
    ) -> Result<Response<grpc::HealthCheckReply>, Status> {
        Ok(Response::new(grpc::HealthCheckReply { title: TITLE.to_owned(), version: VERSION.to_owned(), commit: None }))
    }
}

pub(crate) struct CollectionsService {
    catalog: Arc<Catalog>,
}

impl CollectionsService {
    pub(crate) fn new(catalog: Arc<Catalog>) -> CollectionsService {
        CollectionsService { catalog }
    }
}

service_impl! {
    impl Collections for CollectionsService {
        async fn get(
            &self,
            request: Request<grpc::GetCollectionInfoRequest>,
        ) -> Result<Response<grpc::GetCollectionInfoResponse>, Status> {
            let started = Instant::now();
            let collection = self.catalog.get(&request.into_inner().collection_name)?;
            let optimizer = collection.optimizer_state();
            let info = collection
                .read(move |shard, meta| collection_info(shard, meta, &optimizer))
                .await?;
            Ok(Response::new(grpc::GetCollectionInfoResponse {
                result: Some(info),
                time: seconds_since(started),
            }))
        }

        async fn list(
            &self,
            _request: Request<grpc::ListCollectionsRequest>,
        ) -> Result<Response<grpc::ListCollectionsResponse>, Status> {
            let started = Instant::now();
            let collections = self
                .catalog
                .names()
                .into_iter()
                .map(|name| grpc::CollectionDescription { name })
                .collect();
            Ok(Response::new(grpc::ListCollectionsResponse {
                collections,
                time: seconds_since(started),
            }))
        }

        async fn create(
            &self,
            request: Request<grpc::CreateCollection>,
        ) -> Result<Response<grpc::CollectionOperationResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            validate_name(&request.collection_name)?;
            let meta = collection_meta_from_grpc(&request)?;
            self.catalog.create(&request.collection_name, meta).await?;
            Ok(Response::new(grpc::CollectionOperationResponse {
                result: true,
                time: seconds_since(started),
            }))
        }

        async fn delete(
            &self,
            request: Request<grpc::DeleteCollection>,
        ) -> Result<Response<grpc::CollectionOperationResponse>, Status> {
            let started = Instant::now();
            let deleted = self.catalog.delete(&request.into_inner().collection_name).await?;
            Ok(Response::new(grpc::CollectionOperationResponse {
                result: deleted,
                time: seconds_since(started),
            }))
        }

        async fn collection_exists(
            &self,
            request: Request<grpc::CollectionExistsRequest>,
        ) -> Result<Response<grpc::CollectionExistsResponse>, Status> {
            let started = Instant::now();
            let exists = self.catalog.exists(&request.into_inner().collection_name);
            Ok(Response::new(grpc::CollectionExistsResponse {
                result: Some(grpc::CollectionExists { exists }),
                time: seconds_since(started),
            }))
        }
    }
    unimplemented {
        update(UpdateCollection) -> CollectionOperationResponse;
        update_aliases(ChangeAliases) -> CollectionOperationResponse;
        list_collection_aliases(ListCollectionAliasesRequest) -> ListAliasesResponse;
        list_aliases(ListAliasesRequest) -> ListAliasesResponse;
        collection_cluster_info(CollectionClusterInfoRequest) -> CollectionClusterInfoResponse;
        update_collection_cluster_setup(UpdateCollectionClusterSetupRequest) -> UpdateCollectionClusterSetupResponse;
        create_shard_key(CreateShardKeyRequest) -> CreateShardKeyResponse;
        delete_shard_key(DeleteShardKeyRequest) -> DeleteShardKeyResponse;
        list_shard_keys(ListShardKeysRequest) -> ListShardKeysResponse;
    }
}

pub(crate) struct PointsService {
    catalog: Arc<Catalog>,
}

impl PointsService {
    pub(crate) fn new(catalog: Arc<Catalog>) -> PointsService {
        PointsService { catalog }
    }
}

service_impl! {
    impl Points for PointsService {
        async fn upsert(
            &self,
            request: Request<grpc::UpsertPoints>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let wait = request.wait;
            let collection = self.catalog.get(&request.collection_name)?;
            if request.update_filter.is_some() {
                return Err(EdgeError::unimplemented("upsert with update_filter").into());
            }
            if request
                .update_mode
                .is_some_and(|mode| mode != grpc::UpdateMode::Upsert as i32)
            {
                return Err(EdgeError::unimplemented("an update_mode other than Upsert").into());
            }
            let size = collection.meta().size;
            let points = request
                .points
                .into_iter()
                .map(|point| -> EdgeResult<edge::PointStructPersisted> {
                    let id = point
                        .id
                        .as_ref()
                        .ok_or_else(|| EdgeError::bad_input("a point has no id"))?;
                    let vector = dense_vector_from_grpc(point.vectors)?;
                    check_dimension(size, &vector)?;
                    Ok(edge::PointStructPersisted {
                        id: point_id_from_grpc(id)?,
                        vector: edge::VectorStructPersisted::Single(vector),
                        payload: Some(payload_from_grpc(point.payload)),
                    })
                })
                .collect::<EdgeResult<Vec<_>>>()?;
            let operation = edge::UpdateOperation::PointOperation(
                edge::PointOperations::UpsertPoints(edge::PointInsertOperations::PointsList(
                    points,
                )),
            );
            let operation_id = collection.update(operation).await?;
            Ok(Response::new(operation_response(operation_id, wait, started)))
        }

        async fn delete(
            &self,
            request: Request<grpc::DeletePoints>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let wait = request.wait;
            let collection = self.catalog.get(&request.collection_name)?;
            let operation = match selector_from_grpc(request.points)? {
                Selector::Ids(ids) => edge::PointOperations::DeletePoints { ids },
                Selector::Filter(filter) => edge::PointOperations::DeletePointsByFilter(filter),
            };
            let operation_id = collection
                .update(edge::UpdateOperation::PointOperation(operation))
                .await?;
            Ok(Response::new(operation_response(operation_id, wait, started)))
        }

        async fn get(
            &self,
            request: Request<grpc::GetPoints>,
        ) -> Result<Response<grpc::GetResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let collection = self.catalog.get(&request.collection_name)?;
            let ids = point_ids_from_grpc(&request.ids)?;
            let with_payload = with_payload_from_grpc(request.with_payload, true)?;
            let with_vector = with_vectors_from_grpc(request.with_vectors);
            let records = collection
                .read(move |shard, _| {
                    Ok(shard.retrieve(&ids, Some(with_payload), Some(with_vector))?)
                })
                .await?;
            Ok(Response::new(grpc::GetResponse {
                result: records.into_iter().map(record_to_grpc).collect(),
                time: seconds_since(started),
                usage: None,
            }))
        }

        async fn set_payload(
            &self,
            request: Request<grpc::SetPayloadPoints>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let wait = request.wait;
            let collection = self.catalog.get(&request.collection_name)?;
            let operation = set_payload_op(request.payload, request.points_selector, request.key)?;
            let operation_id = collection
                .update(edge::UpdateOperation::PayloadOperation(edge::PayloadOps::SetPayload(
                    operation,
                )))
                .await?;
            Ok(Response::new(operation_response(operation_id, wait, started)))
        }

        async fn overwrite_payload(
            &self,
            request: Request<grpc::SetPayloadPoints>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let wait = request.wait;
            let collection = self.catalog.get(&request.collection_name)?;
            let operation = set_payload_op(request.payload, request.points_selector, request.key)?;
            let operation_id = collection
                .update(edge::UpdateOperation::PayloadOperation(
                    edge::PayloadOps::OverwritePayload(operation),
                ))
                .await?;
            Ok(Response::new(operation_response(operation_id, wait, started)))
        }

        async fn delete_payload(
            &self,
            request: Request<grpc::DeletePayloadPoints>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let wait = request.wait;
            let collection = self.catalog.get(&request.collection_name)?;
            let keys = request
                .keys
                .iter()
                .map(|key| key_from_grpc(key))
                .collect::<EdgeResult<Vec<_>>>()?;
            let (points, filter) = match selector_from_grpc(request.points_selector)? {
                Selector::Ids(ids) => (Some(ids), None),
                Selector::Filter(filter) => (None, Some(filter)),
            };
            let operation = edge::DeletePayloadOp {
                keys,
                points,
                filter,
            };
            let operation_id = collection
                .update(edge::UpdateOperation::PayloadOperation(
                    edge::PayloadOps::DeletePayload(operation),
                ))
                .await?;
            Ok(Response::new(operation_response(operation_id, wait, started)))
        }

        async fn clear_payload(
            &self,
            request: Request<grpc::ClearPayloadPoints>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let wait = request.wait;
            let collection = self.catalog.get(&request.collection_name)?;
            let operation = match selector_from_grpc(request.points)? {
                Selector::Ids(points) => edge::PayloadOps::ClearPayload { points },
                Selector::Filter(filter) => edge::PayloadOps::ClearPayloadByFilter(filter),
            };
            let operation_id = collection
                .update(edge::UpdateOperation::PayloadOperation(operation))
                .await?;
            Ok(Response::new(operation_response(operation_id, wait, started)))
        }

        async fn create_field_index(
            &self,
            request: Request<grpc::CreateFieldIndexCollection>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let wait = request.wait;
            let collection = self.catalog.get(&request.collection_name)?;
            let field_type =
                field_type_from_grpc(request.field_type, request.field_index_params.as_ref())?;
            let operation = edge::UpdateOperation::FieldIndexOperation(
                edge::FieldIndexOperations::CreateIndex(edge::CreateIndex {
                    field_name: key_from_grpc(&request.field_name)?,
                    field_schema: Some(edge::PayloadFieldSchema::FieldType(field_type)),
                }),
            );
            let field_name = request.field_name;
            let operation_id = collection
                .update_with_meta(operation, move |meta| {
                    meta.payload_indexes.insert(field_name, field_type);
                })
                .await?;
            Ok(Response::new(operation_response(operation_id, wait, started)))
        }

        async fn delete_field_index(
            &self,
            request: Request<grpc::DeleteFieldIndexCollection>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let wait = request.wait;
            let collection = self.catalog.get(&request.collection_name)?;
            let operation = edge::UpdateOperation::FieldIndexOperation(
                edge::FieldIndexOperations::DeleteIndex(key_from_grpc(&request.field_name)?),
            );
            let field_name = request.field_name;
            let operation_id = collection
                .update_with_meta(operation, move |meta| {
                    meta.payload_indexes.remove(&field_name);
                })
                .await?;
            Ok(Response::new(operation_response(operation_id, wait, started)))
        }

        async fn search(
            &self,
            request: Request<grpc::SearchPoints>,
        ) -> Result<Response<grpc::SearchResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let collection = self.catalog.get(&request.collection_name)?;
            let result = search(&collection, request).await?;
            Ok(Response::new(grpc::SearchResponse {
                result,
                time: seconds_since(started),
                usage: None,
            }))
        }

        async fn search_batch(
            &self,
            request: Request<grpc::SearchBatchPoints>,
        ) -> Result<Response<grpc::SearchBatchResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let collection = self.catalog.get(&request.collection_name)?;
            let mut results = Vec::with_capacity(request.search_points.len());
            for search_points in request.search_points {
                let result = search(&collection, search_points).await?;
                results.push(grpc::BatchResult { result });
            }
            Ok(Response::new(grpc::SearchBatchResponse {
                result: results,
                time: seconds_since(started),
                usage: None,
            }))
        }

        async fn scroll(
            &self,
            request: Request<grpc::ScrollPoints>,
        ) -> Result<Response<grpc::ScrollResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let collection = self.catalog.get(&request.collection_name)?;
            if request.order_by.is_some() {
                return Err(EdgeError::unimplemented("scroll with order_by").into());
            }
            let scroll = edge::ScrollRequest {
                offset: request.offset.as_ref().map(point_id_from_grpc).transpose()?,
                limit: Some(request.limit.map_or(DEFAULT_LIMIT as usize, |limit| limit as usize)),
                filter: optional_filter_from_grpc(request.filter)?,
                with_payload: Some(with_payload_from_grpc(request.with_payload, true)?),
                with_vector: with_vectors_from_grpc(request.with_vectors),
                order_by: None,
            };
            if scroll.limit == Some(0) {
                return Err(EdgeError::bad_input("limit must be 1 or larger").into());
            }
            let (records, next_offset) = collection
                .read(move |shard, _| Ok(shard.scroll(scroll)?))
                .await?;
            Ok(Response::new(grpc::ScrollResponse {
                next_page_offset: next_offset.map(point_id_to_grpc),
                result: records.into_iter().map(record_to_grpc).collect(),
                time: seconds_since(started),
                usage: None,
            }))
        }

        async fn count(
            &self,
            request: Request<grpc::CountPoints>,
        ) -> Result<Response<grpc::CountResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let collection = self.catalog.get(&request.collection_name)?;
            let count = edge::CountRequest {
                filter: optional_filter_from_grpc(request.filter)?,
                exact: request.exact.unwrap_or(true),
            };
            let n_points = collection
                .read(move |shard, _| Ok(shard.count(count)?))
                .await?;
            Ok(Response::new(grpc::CountResponse {
                result: Some(grpc::CountResult {
                    count: n_points as u64,
                }),
                time: seconds_since(started),
                usage: None,
            }))
        }

        async fn query(
            &self,
            request: Request<grpc::QueryPoints>,
        ) -> Result<Response<grpc::QueryResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let collection = self.catalog.get(&request.collection_name)?;
            let result = query(&collection, request).await?;
            Ok(Response::new(grpc::QueryResponse {
                result,
                time: seconds_since(started),
                usage: None,
            }))
        }

        async fn query_batch(
            &self,
            request: Request<grpc::QueryBatchPoints>,
        ) -> Result<Response<grpc::QueryBatchResponse>, Status> {
            let started = Instant::now();
            let request = request.into_inner();
            let collection = self.catalog.get(&request.collection_name)?;
            let mut results = Vec::with_capacity(request.query_points.len());
            for query_points in request.query_points {
                let result = query(&collection, query_points).await?;
                results.push(grpc::BatchResult { result });
            }
            Ok(Response::new(grpc::QueryBatchResponse {
                result: results,
                time: seconds_since(started),
                usage: None,
            }))
        }
    }
    unimplemented {
        update_vectors(UpdatePointVectors) -> PointsOperationResponse;
        delete_vectors(DeletePointVectors) -> PointsOperationResponse;
        create_vector_name(CreateVectorNameRequest) -> PointsOperationResponse;
        delete_vector_name(DeleteVectorNameRequest) -> PointsOperationResponse;
        search_groups(SearchPointGroups) -> SearchGroupsResponse;
        recommend(RecommendPoints) -> RecommendResponse;
        recommend_batch(RecommendBatchPoints) -> RecommendBatchResponse;
        recommend_groups(RecommendPointGroups) -> RecommendGroupsResponse;
        discover(DiscoverPoints) -> DiscoverResponse;
        discover_batch(DiscoverBatchPoints) -> DiscoverBatchResponse;
        update_batch(UpdateBatchPoints) -> UpdateBatchResponse;
        query_groups(QueryPointGroups) -> QueryGroupsResponse;
        facet(FacetCounts) -> FacetResponse;
        search_matrix_pairs(SearchMatrixPoints) -> SearchMatrixPairsResponse;
        search_matrix_offsets(SearchMatrixPoints) -> SearchMatrixOffsetsResponse;
    }
}

/// The `SearchPoints` RPC on the engine's (older) search API.
async fn search(collection: &Arc<Collection>, request: grpc::SearchPoints) -> EdgeResult<Vec<grpc::ScoredPoint>> {
    check_default_vector(request.vector_name.as_deref())?;
    if request.sparse_indices.is_some() {
        return Err(EdgeError::unimplemented("a sparse search vector"));
    }
    if request.limit == 0 {
        return Err(EdgeError::bad_input("limit must be 1 or larger"));
    }
    check_dimension(collection.meta().size, &request.vector)?;
    let search = edge::SearchRequest {
        query: edge::QueryEnum::Nearest(edge::NamedQuery {
            query: edge::VectorInternal::Dense(request.vector),
            using: None,
        }),
        filter: optional_filter_from_grpc(request.filter)?,
        params: search_params_from_grpc(request.params),
        limit: request.limit as usize,
        offset: request.offset.unwrap_or(0) as usize,
        with_payload: Some(with_payload_from_grpc(request.with_payload, false)?),
        with_vector: Some(with_vectors_from_grpc(request.with_vectors)),
        score_threshold: request.score_threshold,
    };
    let points = collection.read(move |shard, _| Ok(shard.search(search)?)).await?;
    Ok(points.into_iter().map(scored_point_to_grpc).collect())
}

/// The `QueryPoints` RPC: a nearest-neighbour query on the dense vector, or, without a query,
/// points in id order.
async fn query(collection: &Arc<Collection>, request: grpc::QueryPoints) -> EdgeResult<Vec<grpc::ScoredPoint>> {
    check_default_vector(request.using.as_deref())?;
    if !request.prefetch.is_empty() {
        return Err(EdgeError::unimplemented("a query with prefetch"));
    }
    if request.lookup_from.is_some() {
        return Err(EdgeError::unimplemented("a query with lookup_from"));
    }
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 {
        return Err(EdgeError::bad_input("limit must be 1 or larger"));
    }
    let scoring = match request.query.and_then(|query| query.variant) {
        None => None,
        Some(grpc::query::Variant::Nearest(input)) => {
            let vector = dense_input_from_grpc(input)?;
            check_dimension(collection.meta().size, &vector)?;
            Some(edge::ScoringQuery::Vector(edge::QueryEnum::Nearest(edge::NamedQuery {
                query: edge::VectorInternal::Dense(vector),
                using: None,
            })))
        }
        Some(_) => {
            return Err(EdgeError::unimplemented(
                "a query other than nearest (recommend, discover, fusion, formula, ...)",
            ));
        }
    };
    let query = edge::QueryRequest {
        prefetches: Vec::new(),
        query: scoring,
        filter: optional_filter_from_grpc(request.filter)?,
        score_threshold: request.score_threshold.map(OrderedFloat),
        limit: limit as usize,
        offset: request.offset.unwrap_or(0) as usize,
        params: search_params_from_grpc(request.params),
        with_vector: with_vectors_from_grpc(request.with_vectors),
        with_payload: with_payload_from_grpc(request.with_payload, false)?,
    };
    let points = collection.read(move |shard, _| Ok(shard.query(query)?)).await?;
    Ok(points.into_iter().map(scored_point_to_grpc).collect())
}

/// Only the unnamed vector exists; Qdrant answers this for any other name.
fn check_default_vector(name: Option<&str>) -> EdgeResult<()> {
    match name {
        Some(name) if !name.is_empty() => Err(EdgeError::bad_input(format!("Not existing vector name error: {name}"))),
        _ => Ok(()),
    }
}

enum Selector {
    Ids(Vec<edge::PointId>),
    Filter(edge::Filter),
}

fn selector_from_grpc(selector: Option<grpc::PointsSelector>) -> EdgeResult<Selector> {
    match selector.and_then(|selector| selector.points_selector_one_of) {
        Some(PointsSelectorOneOf::Points(ids)) => Ok(Selector::Ids(point_ids_from_grpc(&ids.ids)?)),
        Some(PointsSelectorOneOf::Filter(filter)) => Ok(Selector::Filter(filter_from_grpc(filter)?)),
        None => Err(EdgeError::bad_input("the points selector is empty")),
    }
}

fn set_payload_op(
    payload: HashMap<String, grpc::Value>,
    selector: Option<grpc::PointsSelector>,
    key: Option<String>,
) -> EdgeResult<edge::SetPayloadOp> {
    let (points, filter) = match selector_from_grpc(selector)? {
        Selector::Ids(ids) => (Some(ids), None),
        Selector::Filter(filter) => (None, Some(filter)),
    };
    Ok(edge::SetPayloadOp {
        payload: payload_from_grpc(payload),
        points,
        filter,
        key: key.as_deref().map(key_from_grpc).transpose()?,
    })
}

fn collection_meta_from_grpc(request: &grpc::CreateCollection) -> EdgeResult<CollectionMeta> {
    let params = match request.vectors_config.as_ref().and_then(|config| config.config.as_ref()) {
        Some(VectorsConfigKind::Params(params)) => params,
        Some(VectorsConfigKind::ParamsMap(map)) => match map.map.get("") {
            Some(params) if map.map.len() == 1 => params,
            _ => return Err(EdgeError::unimplemented("named vectors")),
        },
        None => {
            return Err(EdgeError::unimplemented("a collection without a dense vector"));
        }
    };
    if request.sparse_vectors_config.as_ref().is_some_and(|sparse| !sparse.map.is_empty()) {
        return Err(EdgeError::unimplemented("sparse vectors"));
    }
    if params.multivector_config.is_some() {
        return Err(EdgeError::unimplemented("multivectors"));
    }
    if params.size == 0 {
        return Err(EdgeError::bad_input("vector size must be 1 or larger"));
    }
    let mut hnsw = edge::HnswIndexConfig::default();
    for diff in [request.hnsw_config.as_ref(), params.hnsw_config.as_ref()].into_iter().flatten() {
        let to_usize = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        if let Some(m) = diff.m {
            hnsw.m = to_usize(m);
        }
        if let Some(ef_construct) = diff.ef_construct {
            hnsw.ef_construct = to_usize(ef_construct);
        }
        if let Some(full_scan_threshold) = diff.full_scan_threshold {
            hnsw.full_scan_threshold = to_usize(full_scan_threshold);
        }
        if let Some(max_indexing_threads) = diff.max_indexing_threads {
            hnsw.max_indexing_threads = to_usize(max_indexing_threads);
        }
        if let Some(payload_m) = diff.payload_m {
            hnsw.payload_m = Some(to_usize(payload_m));
        }
    }
    let created_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64);
    Ok(CollectionMeta {
        size: params.size,
        distance: distance_from_grpc(params.distance)?,
        hnsw,
        optimizers: optimizers_from_grpc(request.optimizers_config.as_ref())?,
        payload_indexes: Default::default(),
        created_at,
    })
}

/// The optimizer settings the engine has. The others (`memmap_threshold`, `flush_interval_sec`,
/// `max_optimization_threads`) are ignored: vectors stay in RAM, flushes and optimizations run
/// every 5 seconds, one collection at a time.
fn optimizers_from_grpc(diff: Option<&grpc::OptimizersConfigDiff>) -> EdgeResult<edge::EdgeOptimizersConfig> {
    let Some(diff) = diff else {
        return Ok(edge::EdgeOptimizersConfig::default());
    };
    if diff.prevent_unoptimized == Some(true) {
        return Err(EdgeError::unimplemented("prevent_unoptimized"));
    }
    if let Some(deleted_threshold) = diff.deleted_threshold
        && !(0.0..=1.0).contains(&deleted_threshold)
    {
        return Err(EdgeError::bad_input("deleted_threshold must be between 0 and 1"));
    }
    let to_usize = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
    Ok(edge::EdgeOptimizersConfig {
        deleted_threshold: diff.deleted_threshold,
        vacuum_min_vector_number: diff.vacuum_min_vector_number.map(to_usize),
        default_segment_number: diff.default_segment_number.map(to_usize),
        max_segment_size: diff.max_segment_size.map(to_usize),
        indexing_threshold: diff.indexing_threshold.map(to_usize),
        prevent_unoptimized: None,
    })
}

fn collection_info(
    shard: &edge::EdgeShard,
    meta: &CollectionMeta,
    optimizer: &OptimizerState,
) -> EdgeResult<grpc::CollectionInfo> {
    let points_count = count_points(shard)?;
    let shard_info = shard.info();
    let payload_schema = meta
        .payload_indexes
        .iter()
        .map(|(field_name, schema_type)| {
            let points = shard_info
                .payload_schema
                .iter()
                .find(|(key, _)| key.to_string() == *field_name)
                .map_or(0, |(_, index)| index.points as u64);
            let info = grpc::PayloadSchemaInfo {
                data_type: payload_schema_type_to_grpc(*schema_type) as i32,
                params: None,
                points: Some(points),
            };
            (field_name.clone(), info)
        })
        .collect();
    let hnsw = meta.hnsw;
    let optimizers = &meta.optimizers;
    let vector_params = grpc::VectorParams {
        size: meta.size,
        distance: distance_to_grpc(meta.distance) as i32,
        ..grpc::VectorParams::default()
    };
    let params = grpc::CollectionParams {
        shard_number: 1,
        vectors_config: Some(grpc::VectorsConfig { config: Some(VectorsConfigKind::Params(vector_params)) }),
        replication_factor: Some(1),
        write_consistency_factor: Some(1),
        ..grpc::CollectionParams::default()
    };
    let config = grpc::CollectionConfig {
        params: Some(params),
        hnsw_config: Some(grpc::HnswConfigDiff {
            m: Some(hnsw.m as u64),
            ef_construct: Some(hnsw.ef_construct as u64),
            full_scan_threshold: Some(hnsw.full_scan_threshold as u64),
            max_indexing_threads: Some(hnsw.max_indexing_threads as u64),
            payload_m: hnsw.payload_m.map(|payload_m| payload_m as u64),
            ..grpc::HnswConfigDiff::default()
        }),
        optimizer_config: Some(grpc::OptimizersConfigDiff {
            deleted_threshold: Some(optimizers.deleted_threshold.unwrap_or(DEFAULT_DELETED_THRESHOLD)),
            vacuum_min_vector_number: Some(
                optimizers.vacuum_min_vector_number.map_or(DEFAULT_VACUUM_MIN_VECTOR_NUMBER, |n| n as u64),
            ),
            default_segment_number: Some(optimizers.default_segment_number.unwrap_or(0) as u64),
            max_segment_size: optimizers.max_segment_size.map(|kb| kb as u64),
            // 0 (indexing off) is reported as given, not as the engine's "never" (usize::MAX).
            indexing_threshold: Some(
                optimizers.indexing_threshold.unwrap_or(optimizers.get_indexing_threshold_kb()) as u64
            ),
            flush_interval_sec: Some(5),
            ..grpc::OptimizersConfigDiff::default()
        }),
        wal_config: Some(grpc::WalConfigDiff {
            wal_capacity_mb: Some(32),
            wal_segments_ahead: Some(0),
            wal_retain_closed: Some(1),
        }),
        ..grpc::CollectionConfig::default()
    };
    // As Qdrant: Red after a failed optimization, Yellow while one runs.
    let status = match (&optimizer.error, optimizer.running) {
        (Some(_), _) => grpc::CollectionStatus::Red,
        (None, true) => grpc::CollectionStatus::Yellow,
        (None, false) => grpc::CollectionStatus::Green,
    };
    let optimizer_status = match &optimizer.error {
        Some(error) => grpc::OptimizerStatus { ok: false, error: error.clone() },
        None => grpc::OptimizerStatus { ok: true, error: String::new() },
    };
    Ok(grpc::CollectionInfo {
        status: status as i32,
        optimizer_status: Some(optimizer_status),
        segments_count: shard_info.segments_count as u64,
        config: Some(config),
        payload_schema,
        points_count: Some(points_count),
        indexed_vectors_count: Some(shard_info.indexed_vectors_count as u64),
        ..grpc::CollectionInfo::default()
    })
}

/// Updates are always applied before the reply; the status still follows `wait` as Qdrant's
/// does: `Completed` when the client waited, `Acknowledged` otherwise (`wait` defaults to false).
fn operation_response(operation_id: u64, wait: Option<bool>, started: Instant) -> grpc::PointsOperationResponse {
    let status = if wait == Some(true) { grpc::UpdateStatus::Completed } else { grpc::UpdateStatus::Acknowledged };
    grpc::PointsOperationResponse {
        result: Some(grpc::UpdateResult { operation_id: Some(operation_id), status: status as i32 }),
        time: seconds_since(started),
        usage: None,
    }
}

fn seconds_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}
