//! Authentication, rate limiting and authorization: the `authenticate` middleware turns
//! credentials into a [`Principal`] (or a 401/429), and the [`Authorized`] extractor checks
//! the permission each handler declares in its signature (or a 403). Nothing else in the
//! server reads credential headers.

use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use contextiq_core::auth::hash_key;
use contextiq_core::{Access, ApiKey, EngineId, KeyService, OrgId, Permission, Rate, RateLimiter, Scope};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{AuthSettings, PathPatterns};
use crate::error::ApiError;

/// Who is asking: the access they carry and what they may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub access: Access,
    pub permissions: BTreeSet<Permission>,
    pub credential: Credential,
    /// The rate this credential is held to; `None`: it is not limited.
    pub rate: Option<Rate>,
    /// When the credential stops working: a key's expiry, a token's `exp`. A key it mints
    /// never outlives it.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    ApiKey {
        id: Uuid,
    },
    Jwt {
        subject: String,
    },
    /// Authentication is turned off (`AUTH_REQUIRE_AUTH=false`); `client` is the peer's
    /// address, when known.
    Anonymous {
        client: Option<IpAddr>,
    },
}

impl Principal {
    /// ADMIN holds every permission.
    pub fn may(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission) || self.permissions.contains(&Permission::Admin)
    }

    /// What this principal holds, as the rules of keys it mints or sees know it.
    pub fn creator(&self) -> contextiq_core::Creator {
        contextiq_core::Creator {
            access: self.access.clone(),
            permissions: self.permissions.clone(),
            expires_at: self.expires_at,
            rate_per_second: self.rate.map(|rate| rate.per_second),
            key_id: match self.credential {
                Credential::ApiKey { id } => Some(id),
                Credential::Jwt { .. } | Credential::Anonymous { .. } => None,
            },
        }
    }

    /// Who made a change, as revisions record it.
    pub fn actor(&self) -> String {
        match &self.credential {
            Credential::ApiKey { id } => format!("key:{id}"),
            Credential::Jwt { subject } => format!("jwt:{}:{subject}", self.access.org_id),
            Credential::Anonymous { .. } => "anonymous".to_owned(),
        }
    }

    /// The rate-limit bucket of this credential. Unambiguous: an org and a subject are told
    /// apart by the org's length, so no (org, subject) pair can name another pair's bucket.
    pub fn rate_bucket(&self) -> String {
        match &self.credential {
            Credential::ApiKey { id } => format!("key:{id}"),
            Credential::Jwt { subject } => {
                let org = self.access.org_id.as_str();
                format!("jwt:{}:{org}:{subject}", org.len())
            }
            Credential::Anonymous { client: Some(client) } => format!("client:{client}"),
            Credential::Anonymous { client: None } => "client:unknown".to_owned(),
        }
    }
}

/// A permission a handler requires, named by a marker type.
pub trait Requirement {
    const PERMISSION: Permission;
}

macro_rules! requirements {
    ($($name:ident => $permission:ident),* $(,)?) => {$(
        pub struct $name;
        impl Requirement for $name {
            const PERMISSION: Permission = Permission::$permission;
        }
    )*};
}

requirements! {
    SessionRead => SessionRead,
    SessionWrite => SessionWrite,
    MemoryRead => MemoryRead,
    MemoryWrite => MemoryWrite,
    Admin => Admin,
}

/// The principal of a request that holds permission `R::PERMISSION`; 401 without
/// credentials, 403 without the permission.
pub struct Authorized<R>(pub Principal, pub PhantomData<R>);

impl<R: Requirement, S: Send + Sync> FromRequestParts<S> for Authorized<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let principal = parts.extensions.get::<Principal>().cloned().ok_or(ApiError::MissingCredentials)?;
        require(&principal, R::PERMISSION)?;
        Ok(Authorized(principal, PhantomData))
    }
}

/// 403 unless the principal holds `permission`: for a permission that depends on the request
/// (an extractor's check after reading the body), where [`Authorized`] cannot name it.
pub fn require(principal: &Principal, permission: Permission) -> Result<(), ApiError> {
    match principal.may(permission) {
        true => Ok(()),
        false => Err(ApiError::MissingPermission(permission)),
    }
}

/// A credential header as the request carried it.
enum Presented<'a> {
    ApiKey(&'a HeaderValue),
    Authorization(&'a HeaderValue),
}

/// Turns credentials into a principal, once per request.
pub struct Authenticator {
    keys: KeyService,
    require_auth: bool,
    jwt: Option<JwtVerifier>,
    exceptions: PathPatterns,
    /// `None` at the gateway: the services behind it limit, and answer with the headers.
    limiter: Option<Arc<dyn RateLimiter>>,
    /// The rate of credentials without one of their own; `None`: not limited.
    default_rate: Option<Rate>,
    /// When each key's `last_used_at` was last written, so it is written at most once a minute.
    touched: Mutex<HashMap<Uuid, Instant>>,
    /// Keys recently found, by hash, so most requests skip the store. A revocation through this
    /// process's API evicts at once; one made elsewhere (the CLI) holds within `key_cache_ttl`.
    key_cache: Mutex<HashMap<String, (ApiKey, Instant)>>,
    key_cache_ttl: Duration,
    clock: Arc<dyn Clock>,
}

/// Past this many cached keys the cache is emptied; it refills from use.
const MAX_CACHED_KEYS: usize = 10_000;

const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

impl Authenticator {
    pub fn new(
        settings: &AuthSettings,
        keys: KeyService,
        limiter: Arc<dyn RateLimiter>,
        clock: Arc<dyn Clock>,
    ) -> Authenticator {
        Authenticator {
            keys,
            require_auth: settings.require_auth,
            jwt: settings.jwt_secret_key.as_ref().map(|secret| JwtVerifier::new(secret, &settings.jwt_issuer)),
            exceptions: settings.require_auth_exceptions.clone(),
            limiter: Some(limiter),
            default_rate: settings.default_rate(),
            touched: Mutex::new(HashMap::new()),
            key_cache: Mutex::new(HashMap::new()),
            key_cache_ttl: Duration::from_secs(settings.key_cache_seconds),
            clock,
        }
    }

    /// Authenticates without limiting: for the gateway, whose services limit each request.
    pub fn without_rate_limits(self) -> Authenticator {
        Authenticator { limiter: None, ..self }
    }

    /// Drops a key from the cache, so its revocation takes effect on the next request.
    pub fn forget_key(&self, key_hash: &str) {
        self.key_cache.lock().expect("key cache lock poisoned").remove(key_hash);
    }

    /// The usable key behind a presented key text, from the cache when fresh.
    async fn find_key(&self, presented: &str) -> Result<Option<ApiKey>, ApiError> {
        let now = self.clock.now();
        let key_hash = hash_key(presented);
        let cached = self.key_cache.lock().expect("key cache lock poisoned").get(&key_hash).cloned();
        if let Some((key, fetched)) = cached
            && fetched.elapsed() < self.key_cache_ttl
        {
            return Ok(Some(key).filter(|key| key.is_usable(now)));
        }
        let found = self.keys.authenticate(presented, now).await?;
        if let Some(key) = &found
            && !self.key_cache_ttl.is_zero()
        {
            let mut cache = self.key_cache.lock().expect("key cache lock poisoned");
            if cache.len() >= MAX_CACHED_KEYS {
                cache.clear();
            }
            cache.insert(key_hash, (key.clone(), Instant::now()));
        }
        Ok(found)
    }

    fn is_exempt(&self, path: &str) -> bool {
        self.exceptions.matches(path)
    }

    pub(crate) async fn principal(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Result<Principal, ApiError> {
        if !self.require_auth {
            return Ok(Principal {
                access: Access::org(OrgId::default_org()),
                permissions: Permission::ALL.into(),
                credential: Credential::Anonymous { client },
                rate: self.default_rate,
                expires_at: None,
            });
        }
        // An API key comes as `X-API-Key`, as Google's clients send one (`x-goog-api-key`), or as
        // a bearer token (what an Agent Engine client holding a static token sends); a JWT as a
        // bearer token. Which of several credentials would win is a guess a client must not
        // rely on, so several are refused.
        let api_keys = headers.get_all("x-api-key").iter().chain(headers.get_all("x-goog-api-key").iter());
        let authorizations = headers.get_all(axum::http::header::AUTHORIZATION).iter();
        let mut presented = api_keys.map(Presented::ApiKey).chain(authorizations.map(Presented::Authorization));
        let (Some(credential), None) = (presented.next(), presented.next()) else {
            return match headers.contains_key("x-api-key")
                || headers.contains_key("x-goog-api-key")
                || headers.contains_key(axum::http::header::AUTHORIZATION)
            {
                true => Err(ApiError::ConflictingCredentials),
                false => Err(ApiError::MissingCredentials),
            };
        };
        fn text(value: &HeaderValue) -> Result<&str, ApiError> {
            value.to_str().map(str::trim).map_err(|_| ApiError::InvalidCredentials)
        }
        let (api_key, token) = match credential {
            Presented::ApiKey(value) => (Some(text(value)?), None),
            Presented::Authorization(value) => {
                let value = text(value)?;
                let token = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .map(str::trim)
                    .ok_or(ApiError::InvalidCredentials)?;
                match token.starts_with(contextiq_core::auth::KEY_PREFIX) {
                    true => (Some(token), None),
                    false => (None, Some(token)),
                }
            }
        };
        if let Some(presented) = api_key {
            let key = self.find_key(presented).await?.ok_or(ApiError::InvalidCredentials)?;
            self.touch(key.id);
            let rate = key.rate_limit_per_second.map(Rate::per_second).or(self.default_rate);
            return Ok(Principal {
                access: Access { org_id: key.org_id, scope: key.scope },
                permissions: key.permissions,
                credential: Credential::ApiKey { id: key.id },
                rate,
                expires_at: key.expires_at,
            });
        }
        if let Some(token) = token {
            let verifier = self.jwt.as_ref().ok_or(ApiError::InvalidCredentials)?;
            let mut principal = verifier.verify(token)?;
            principal.rate = self.default_rate;
            return Ok(principal);
        }
        Err(ApiError::MissingCredentials)
    }

    /// Records a key's use without a write per request.
    fn touch(&self, id: Uuid) {
        let now = Instant::now();
        let mut touched = self.touched.lock().expect("touch lock poisoned");
        if touched.get(&id).is_some_and(|last| now.duration_since(*last) < TOUCH_INTERVAL) {
            return;
        }
        touched.insert(id, now);
        drop(touched);
        let keys = self.keys.clone();
        let now = self.clock.now();
        tokio::spawn(async move {
            if let Err(err) = keys.touch(id, now).await {
                tracing::warn!(error = %err, key_id = %id, "recording a key's last use failed");
            }
        });
    }
}

/// The header naming the reasoning engine a native request acts on.
pub const ENGINE_HEADER: &str = "x-engine-id";

/// The middleware of the session, memory and job routes: `X-Engine-Id` confines the principal
/// to that engine of its org (absent: the `default` engine, which is the whole org as it was
/// before engines). Keys belong to the org and take no engine.
pub async fn select_engine(mut request: Request, next: Next) -> Response {
    let mut values = request.headers().get_all(ENGINE_HEADER).iter();
    let (first, second) = (values.next(), values.next());
    let Some(value) = first else { return next.run(request).await };
    let engine = match (second, value.to_str().map(|text| EngineId::parse(text, "X-Engine-Id"))) {
        (None, Ok(Ok(engine))) => engine,
        (Some(_), _) => {
            let err = contextiq_core::Error::validation("X-Engine-Id", "give the header once");
            return ApiError::Domain(err).into_response();
        }
        (None, Ok(Err(err))) => return ApiError::Domain(err).into_response(),
        (None, Err(_)) => {
            let err = contextiq_core::Error::validation("X-Engine-Id", "must be ASCII");
            return ApiError::Domain(err).into_response();
        }
    };
    if let Some(principal) = request.extensions_mut().get_mut::<Principal>() {
        principal.access = principal.access.in_engine(&engine);
    }
    next.run(request).await
}

/// The middleware: exempt paths pass; everything else needs a valid credential within its rate.
pub async fn authenticate(
    State(authenticator): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    if authenticator.is_exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.ip());
    let principal = match authenticator.principal(request.headers(), client).await {
        Ok(found) => found,
        Err(err) => return err.into_response(),
    };
    let (Some(limiter), Some(rate)) = (&authenticator.limiter, principal.rate) else {
        request.extensions_mut().insert(principal);
        return next.run(request).await;
    };
    let decision = limiter.check(&principal.rate_bucket(), rate).await;
    let mut response = if decision.allowed {
        request.extensions_mut().insert(principal);
        next.run(request).await
    } else {
        ApiError::RateLimited { retry_after_seconds: decision.retry_after_seconds }.into_response()
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", decision.limit as u64),
        ("ratelimit-remaining", decision.remaining as u64),
        ("ratelimit-reset", decision.reset_seconds),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    if !decision.allowed {
        headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(decision.retry_after_seconds));
    }
    response
}

/// JWT claims as the seed defines them.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    org_id: String,
    /// One string: a list, even one holding the issuer, is refused.
    #[allow(dead_code)] // Checked by the library; declared so that its type is enforced.
    iss: String,
    exp: u64,
    #[serde(default)]
    permissions: Vec<String>,
    scope: Option<Scope>,
}

/// The longest `sub` a token may carry; `org_id` has the API keys' limit.
const MAX_SUBJECT_CHARS: usize = 256;
const MAX_ORG_CHARS: usize = 128;

struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    fn new(secret: &SecretString, issuer: &str) -> JwtVerifier {
        // Only HS256: tokens naming another algorithm, `none` included, fail validation.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        JwtVerifier { key: DecodingKey::from_secret(secret.expose_secret().as_bytes()), validation }
    }

    /// The principal of a valid token, held to the limits API keys are held to; anything else
    /// is a 401, whatever is wrong with it.
    fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let rejected = |reason: &str| {
            tracing::debug!(reason, "JWT rejected");
            ApiError::InvalidCredentials
        };
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|err| {
            tracing::debug!(error = %err, "JWT rejected");
            ApiError::InvalidCredentials
        })?;
        // RFC 7515 §4.1.11: a token naming extensions its receiver must understand is refused
        // by a receiver that understands none.
        if data.header.crit.is_some() {
            return Err(rejected("crit header"));
        }
        let claims = data.claims;
        if claims.permissions.len() > 2 * Permission::ALL.len() {
            return Err(rejected("too many permissions"));
        }
        let permissions = claims
            .permissions
            .iter()
            .map(|name| name.parse::<Permission>())
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(|_| rejected("unknown permission"))?;
        let bounded = |text: &str, max_chars: usize| !text.trim().is_empty() && text.chars().count() <= max_chars;
        if contextiq_core::engine::check_org_id(&claims.org_id, MAX_ORG_CHARS).is_err()
            || !bounded(&claims.sub, MAX_SUBJECT_CHARS)
        {
            return Err(rejected("org_id or sub out of bounds"));
        }
        let scope = claims.scope.filter(|scope| !scope.is_empty());
        if let Some(scope) = &scope {
            contextiq_core::session::check_scope(scope).map_err(|_| rejected("scope out of bounds"))?;
        }
        let expires_at = i64::try_from(claims.exp).ok().and_then(|exp| DateTime::from_timestamp(exp, 0));
        Ok(Principal {
            access: Access { org_id: OrgId::new(claims.org_id), scope },
            permissions,
            credential: Credential::Jwt { subject: claims.sub },
            rate: None,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_match_exact_paths_and_subtrees() {
        let patterns = PathPatterns::from("/health, /docs/*,,".to_owned());
        let exempt = |path: &str| patterns.matches(path);
        assert!(exempt("/health"));
        assert!(!exempt("/health/ready"));
        assert!(exempt("/docs/index.html"));
        assert!(!exempt("/docs"));
        assert!(!exempt("/api/v1/sessions"));
    }
}
