//! `/api/v1/keys`: API keys of the caller's org, for holders of ADMIN.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use contextiq_core::{ApiKey, Error as CoreError, KeyRequest, Permission, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Admin, Authorized};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, KeyId};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/keys", get(list_keys).post(create_key)).route("/keys/{id}", get(get_key).delete(revoke_key))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// 1 to 128 characters, not blank.
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// At least one of SESSION_READ, SESSION_WRITE, MEMORY_READ, MEMORY_WRITE, ADMIN, each
    /// held by the caller.
    #[schema(schema_with = permissions_schema)]
    pub permissions: BTreeSet<Permission>,
    /// Confines the key to resources whose scope holds these pairs.
    #[schema(schema_with = crate::routes::optional_scope_schema)]
    pub scope: Option<Scope>,
    /// Up to ten years; or give `expires_at`.
    #[schema(minimum = 1, maximum = 316_224_000)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub expires_in_seconds: Option<i64>,
    /// In the future; not with `expires_in_seconds`.
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per second for this key (burst twice that), instead of the default; at most
    /// 100,000, and at most the creating credential's rate.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 100_000)]
    #[serde(default, deserialize_with = "crate::extract::integer")]
    pub rate_limit_per_second: Option<u32>,
}

fn name_schema() -> utoipa::openapi::Object {
    crate::routes::not_blank(contextiq_core::limits::MAX_KEY_NAME_CHARS, false)
}

fn permissions_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let permission =
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(Permission::ALL.map(Permission::as_str)));
    ArrayBuilder::new().items(permission).min_items(Some(1)).build()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyBody {
    pub id: Uuid,
    pub org_id: String,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    #[schema(value_type = Vec<String>)]
    pub permissions: BTreeSet<Permission>,
    pub scope: Option<Scope>,
    pub rate_limit_per_second: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key that minted this one, if a key did: revoking it revoked or revokes this one.
    pub parent_id: Option<Uuid>,
}

/// A new key: the only time its text is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKeyBody {
    /// The key itself (`ck_...`); store it now, it cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyBody>,
}

impl From<ApiKey> for KeyBody {
    fn from(key: ApiKey) -> KeyBody {
        KeyBody {
            id: key.id,
            org_id: key.org_id.to_string(),
            name: key.name,
            prefix: key.prefix,
            permissions: key.permissions,
            scope: key.scope,
            rate_limit_per_second: key.rate_limit_per_second,
            created_at: key.created_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            last_used_at: key.last_used_at,
            parent_id: key.parent_id,
        }
    }
}

/// Creates a key in the caller's org. A key never gets more than its creator holds (the rules
/// are `KeyService::mint`'s): its permissions are a subset of the caller's, its scope within
/// the caller's, its expiry no later than the caller's (the caller's when none is asked), its
/// rate no higher than the caller's (the caller's when none is asked); and revoking the
/// creating key revokes it.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKeyBody), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    ApiJson(request): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKeyBody>), ApiError> {
    let request = KeyRequest {
        name: request.name,
        permissions: request.permissions,
        scope: request.scope,
        expires_in_seconds: request.expires_in_seconds,
        expires_at: request.expires_at,
        rate_limit_per_second: request.rate_limit_per_second,
    };
    let (key, record) = state.keys.mint(&principal.creator(), request, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(CreatedKeyBody { key, record: record.into() })))
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", responses((status = 200, body = KeyList)))]
pub async fn list_keys(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
) -> Result<Json<KeyList>, ApiError> {
    let keys = state.keys.list_seen(&principal.creator()).await?;
    Ok(Json(KeyList { keys: keys.into_iter().map(KeyBody::from).collect() }))
}

#[utoipa::path(get, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = Uuid, Path)),
    responses((status = 200, body = KeyBody), (status = 404, body = Problem)))]
pub async fn get_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    KeyId(id): KeyId,
) -> Result<Json<KeyBody>, ApiError> {
    Ok(Json(state.keys.get_seen(&principal.creator(), id).await?.into()))
}

/// Revokes a key and every key minted under it: they stop working at once on this server
/// (within `AUTH_KEY_CACHE_SECONDS` on other processes); their records stay, with `revoked_at`.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = Uuid, Path)),
    responses((status = 200, body = KeyBody), (status = 404, body = Problem)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    KeyId(id): KeyId,
) -> Result<Json<KeyBody>, ApiError> {
    let revoked = state.keys.revoke_seen(&principal.creator(), id, state.clock.now()).await?;
    for key in &revoked {
        state.authenticator.forget_key(&key.key_hash);
    }
    let key = revoked.into_iter().next().ok_or_else(CoreError::key_not_found)?;
    Ok(Json(key.into()))
}
