//! Who may do what: permissions, API keys, and the access a request carries (its org and,
//! optionally, the scope it is confined to).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Error, OrgId, Result, Scope};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Permission {
    SessionRead,
    SessionWrite,
    MemoryRead,
    MemoryWrite,
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::SessionRead,
        Permission::SessionWrite,
        Permission::MemoryRead,
        Permission::MemoryWrite,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SessionRead => "SESSION_READ",
            Permission::SessionWrite => "SESSION_WRITE",
            Permission::MemoryRead => "MEMORY_READ",
            Permission::MemoryWrite => "MEMORY_WRITE",
            Permission::Admin => "ADMIN",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Permission, String> {
        Permission::ALL
            .into_iter()
            .find(|permission| permission.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| format!("unknown permission {text:?}: expected one of SESSION_READ, SESSION_WRITE, MEMORY_READ, MEMORY_WRITE, ADMIN"))
    }
}

/// What a request may reach: one org, and within it, when `scope` is set, only resources
/// whose scope holds every one of its pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub org_id: OrgId,
    pub scope: Option<Scope>,
}

impl Access {
    /// The whole org.
    pub fn org(org_id: OrgId) -> Access {
        Access { org_id, scope: None }
    }

    /// Whether a resource with `scope` is within reach.
    pub fn reaches(&self, scope: &Scope) -> bool {
        self.scope.as_ref().is_none_or(|constraint| constraint.iter().all(|(key, value)| scope.get(key) == Some(value)))
    }
}

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: Uuid,
    pub org_id: OrgId,
    pub name: String,
    /// Hex SHA-256 of the full key text (`ck_...`).
    pub key_hash: String,
    /// The first characters of the key, to recognise it in lists.
    pub prefix: String,
    pub permissions: BTreeSet<Permission>,
    pub scope: Option<Scope>,
    /// Requests per second allowed to this key, when it differs from the default.
    pub rate_limit_per_second: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key that minted this one over the API, if any: revoking it revokes this one too.
    pub parent_id: Option<Uuid>,
}

impl ApiKey {
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires_at| expires_at > now)
    }
}

/// What `KeyService::create` needs.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub org_id: OrgId,
    pub name: String,
    pub permissions: BTreeSet<Permission>,
    pub scope: Option<Scope>,
    pub rate_limit_per_second: Option<u32>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The key minting this one, when a key does (not the CLI, not a JWT).
    pub parent_id: Option<Uuid>,
}

/// The highest rate a key may be given, in requests per second.
pub use crate::limits::MAX_RATE_PER_SECOND;

/// Persistence of API keys. Keys of every org live here; callers confine by org.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key. A key with a `parent_id` is created only while that parent is
    /// unrevoked (checked in the same transaction as the insert): `Forbidden` otherwise.
    async fn create_key(&self, key: ApiKey) -> Result<ApiKey>;
    async fn find_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>>;
    /// Keys of `org`, or of every org when `None`, newest first.
    async fn list_keys(&self, org: Option<&OrgId>) -> Result<Vec<ApiKey>>;
    async fn get_key(&self, org: Option<&OrgId>, id: Uuid) -> Result<ApiKey>;
    /// Marks the key and every key minted under it (children, their children...) revoked, in
    /// one transaction (idempotent); returns them, the named key first. `NotFound` if it is not
    /// in `org`.
    async fn revoke_key(&self, org: Option<&OrgId>, id: Uuid, now: DateTime<Utc>) -> Result<Vec<ApiKey>>;
    async fn touch_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<()>;
    async fn count_keys(&self) -> Result<u64>;
}

/// The prefix of every key; lets secret scanners recognise leaked keys.
pub const KEY_PREFIX: &str = "ck_";

/// Hex SHA-256 of a presented key.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Makes a new key: `ck_` and 32 random bytes, base64url. Returns the key text (shown once)
/// and its record.
pub fn generate_key(new: NewApiKey, now: DateTime<Utc>) -> Result<(String, ApiKey)> {
    use base64::Engine;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|err| Error::store(std::io::Error::other(err.to_string())))?;
    let key = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let record = ApiKey {
        id: Uuid::now_v7(),
        org_id: new.org_id,
        name: new.name,
        key_hash: hash_key(&key),
        prefix: key[..KEY_PREFIX.len() + 6].to_owned(),
        permissions: new.permissions,
        scope: new.scope,
        rate_limit_per_second: new.rate_limit_per_second,
        created_at: crate::to_micros(now),
        expires_at: new.expires_at.map(crate::to_micros),
        revoked_at: None,
        last_used_at: None,
        parent_id: new.parent_id,
    };
    Ok((key, record))
}

/// Validates what a new key asks for; the rules the CLI and the REST API share.
pub fn check_new_key(new: &NewApiKey, now: DateTime<Utc>) -> Result<()> {
    let max_chars = crate::limits::MAX_KEY_NAME_CHARS;
    if new.name.trim().is_empty() || new.name.chars().count() > max_chars {
        return Err(Error::validation("name", format!("must be 1 to {max_chars} characters")));
    }
    crate::engine::check_org_id(new.org_id.as_str(), max_chars)?;
    if new.permissions.is_empty() {
        return Err(Error::validation("permissions", "must name at least one permission"));
    }
    if let Some(scope) = &new.scope {
        crate::session::check_scope(scope)?;
    }
    if new.expires_at.is_some_and(|at| at <= now) {
        return Err(Error::validation("expires_at", "must be in the future"));
    }
    if new.rate_limit_per_second.is_some_and(|rate| !(1..=MAX_RATE_PER_SECOND).contains(&rate)) {
        return Err(Error::validation("rate_limit_per_second", format!("must be between 1 and {MAX_RATE_PER_SECOND}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_constraints_need_every_pair() {
        let scope =
            |pairs: &[(&str, &str)]| -> Scope { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let access = Access { org_id: OrgId::default_org(), scope: Some(scope(&[("user_id", "u1")])) };
        assert!(access.reaches(&scope(&[("user_id", "u1")])));
        assert!(access.reaches(&scope(&[("user_id", "u1"), ("app", "x")])));
        assert!(!access.reaches(&scope(&[("user_id", "u2")])));
        assert!(!access.reaches(&scope(&[("app", "x")])));
        assert!(Access::org(OrgId::default_org()).reaches(&scope(&[("app", "x")])));
    }

    #[test]
    fn keys_are_random_prefixed_and_stored_hashed() {
        let new = NewApiKey {
            org_id: OrgId::default_org(),
            name: "k".to_owned(),
            permissions: [Permission::Admin].into(),
            scope: None,
            rate_limit_per_second: None,
            expires_at: None,
            parent_id: None,
        };
        let (key, record) = generate_key(new.clone(), Utc::now()).unwrap();
        let (other, _) = generate_key(new, Utc::now()).unwrap();
        assert!(key.starts_with("ck_") && key.len() >= 3 + 43, "{key}");
        assert_ne!(key, other);
        assert_eq!(record.key_hash, hash_key(&key));
        assert_eq!(record.key_hash.len(), 64);
        assert!(!record.key_hash.contains(&key[3..]));
        assert_eq!("session_read".parse::<Permission>().unwrap(), Permission::SessionRead);
        assert!("root".parse::<Permission>().is_err());
    }
}

/// Who mints a key over the API, or looks at keys: what its own credential holds.
#[derive(Debug, Clone)]
pub struct Creator {
    pub access: Access,
    /// ADMIN holds every permission.
    pub permissions: BTreeSet<Permission>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The rate the creator is held to, in requests per second; `None`: not limited.
    pub rate_per_second: Option<u32>,
    /// The creating key, when a key (not a token) creates: the new key's parent.
    pub key_id: Option<Uuid>,
}

impl Creator {
    fn may(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission) || self.permissions.contains(&Permission::Admin)
    }

    /// A scope-limited creator sees only keys confined within its own scope.
    pub fn sees(&self, key: &ApiKey) -> bool {
        match (&self.access.scope, &key.scope) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(scope)) => self.access.reaches(scope),
        }
    }
}

/// What a creator asks for in a new key.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub name: String,
    pub permissions: BTreeSet<Permission>,
    pub scope: Option<Scope>,
    /// Up to [`crate::limits::MAX_TTL_SECONDS`]; not with `expires_at`.
    pub expires_in_seconds: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rate_limit_per_second: Option<u32>,
}

/// The rules of API keys over any [`KeyStore`].
#[derive(Clone)]
pub struct KeyService {
    store: std::sync::Arc<dyn KeyStore>,
}

impl KeyService {
    pub fn new(store: std::sync::Arc<dyn KeyStore>) -> KeyService {
        KeyService { store }
    }

    /// Creates a key; returns its text, which exists nowhere else afterwards.
    pub async fn create(&self, new: NewApiKey, now: DateTime<Utc>) -> Result<(String, ApiKey)> {
        check_new_key(&new, now)?;
        let (key, record) = generate_key(new, now)?;
        let record = self.store.create_key(record).await?;
        Ok((key, record))
    }

    /// Creates a key in the creator's org that never gets more than its creator holds: its
    /// permissions a subset of the creator's, its scope within the creator's (the creator's
    /// when none is asked), its expiry no later than the creator's (the creator's when none is
    /// asked), its rate no higher (the creator's when none is asked); revoking the creating key
    /// revokes it.
    pub async fn mint(&self, creator: &Creator, request: KeyRequest, now: DateTime<Utc>) -> Result<(String, ApiKey)> {
        let expires_at = match (request.expires_in_seconds, request.expires_at) {
            (Some(_), Some(_)) => {
                return Err(Error::validation("expires_at", "give either expires_in_seconds or expires_at"));
            }
            (Some(seconds), None) if !(1..=crate::limits::MAX_TTL_SECONDS).contains(&seconds) => {
                return Err(Error::validation("expires_in_seconds", "must be between 1 and ten years"));
            }
            (Some(seconds), None) => Some(now + chrono::Duration::seconds(seconds)),
            (None, at) => at,
        };
        if let Some(denied) = request.permissions.iter().find(|permission| !creator.may(**permission)) {
            return Err(Error::Forbidden(format!("a key cannot get {denied}, which its creator lacks")));
        }
        let scope = match (&creator.access.scope, request.scope) {
            (Some(constraint), None) => Some(constraint.clone()),
            (_, Some(scope)) if !creator.access.reaches(&scope) => {
                return Err(Error::Forbidden("a key's scope must lie within its creator's".to_owned()));
            }
            (_, scope) => scope,
        };
        let expires_at = match (creator.expires_at, expires_at) {
            (Some(limit), Some(asked)) if asked > limit => {
                return Err(Error::Forbidden(format!("a key cannot outlive its creator, which expires at {limit}")));
            }
            (Some(limit), None) => Some(limit),
            (_, asked) => asked,
        };
        let rate_limit_per_second = match (creator.rate_per_second, request.rate_limit_per_second) {
            (Some(limit), Some(asked)) if asked > limit => {
                return Err(Error::Forbidden(format!("a key cannot be faster than its creator ({limit}/s)")));
            }
            (Some(limit), None) => Some(limit),
            (_, asked) => asked,
        };
        let new = NewApiKey {
            org_id: creator.access.org_id.clone(),
            name: request.name,
            permissions: request.permissions,
            scope,
            rate_limit_per_second,
            expires_at,
            parent_id: creator.key_id,
        };
        self.create(new, now).await
    }

    /// The keys of the viewer's org it sees (see [`Creator::sees`]), newest first.
    pub async fn list_seen(&self, viewer: &Creator) -> Result<Vec<ApiKey>> {
        let keys = self.store.list_keys(Some(&viewer.access.org_id)).await?;
        Ok(keys.into_iter().filter(|key| viewer.sees(key)).collect())
    }

    /// A key the viewer sees; `NotFound` otherwise.
    pub async fn get_seen(&self, viewer: &Creator, id: Uuid) -> Result<ApiKey> {
        let key = self.store.get_key(Some(&viewer.access.org_id), id).await?;
        if !viewer.sees(&key) {
            return Err(Error::key_not_found());
        }
        Ok(key)
    }

    /// Revokes a key the viewer sees, and every key minted under it; returns them, the named
    /// key first.
    pub async fn revoke_seen(&self, viewer: &Creator, id: Uuid, now: DateTime<Utc>) -> Result<Vec<ApiKey>> {
        self.get_seen(viewer, id).await?;
        self.store.revoke_key(Some(&viewer.access.org_id), id, now).await
    }

    /// The usable key a client presented, if any: unknown, revoked and expired keys are
    /// all `None`.
    pub async fn authenticate(&self, presented: &str, now: DateTime<Utc>) -> Result<Option<ApiKey>> {
        if !presented.starts_with(KEY_PREFIX) || presented.len() > 256 {
            return Ok(None);
        }
        let key = self.store.find_key_by_hash(&hash_key(presented)).await?;
        Ok(key.filter(|key| key.is_usable(now)))
    }

    pub async fn list(&self, org: Option<&OrgId>) -> Result<Vec<ApiKey>> {
        self.store.list_keys(org).await
    }

    pub async fn get(&self, org: Option<&OrgId>, id: Uuid) -> Result<ApiKey> {
        self.store.get_key(org, id).await
    }

    /// Revokes a key and every key minted under it; returns them, the named key first.
    pub async fn revoke(&self, org: Option<&OrgId>, id: Uuid, now: DateTime<Utc>) -> Result<Vec<ApiKey>> {
        self.store.revoke_key(org, id, now).await
    }

    pub async fn touch(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        self.store.touch_key(id, now).await
    }

    pub async fn count(&self) -> Result<u64> {
        self.store.count_keys().await
    }
}
