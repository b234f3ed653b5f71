//! The one typed configuration. Layers, each overriding the one before: built-in defaults,
//! an optional TOML file (`contextiq.toml`), environment variables (the names in
//! [`ENVIRONMENT`]), then command-line flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

mod environment;
mod values;

pub use environment::{ENVIRONMENT, default_of};
pub use values::{
    CorsOrigins, EmbeddingProvider, LlmProvider, LogFormat, PathPattern, PathPatterns, Role, SqliteDurability,
};

/// The file read when present in the working directory and no other file is named.
pub const DEFAULT_CONFIG_FILE: &str = "contextiq.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub service_name: String,
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub sessions: SessionSettings,
    pub limits: LimitSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub embedding: EmbeddingSettings,
    pub search: SearchSettings,
    pub worker: WorkerSettings,
    pub jobs: JobSettings,
    pub consolidation: ConsolidationSettings,
    pub llm: LlmSettings,
    pub redis: RedisSettings,
    pub rabbitmq: RabbitMqSettings,
    pub qdrant: QdrantSettings,
    pub gateway: GatewaySettings,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    pub sessions_url: Option<String>,
    pub memory_url: Option<String>,
    pub cors_origins: CorsOrigins,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RabbitMqSettings {
    /// May carry a password: never logged, redacted in `Debug`.
    #[serde(serialize_with = "serialize_secret")]
    pub url: Option<SecretString>,
    pub heartbeat: u16,
    pub connection_attempts: u32,
    pub queue_prefix: String,
}

impl Default for RabbitMqSettings {
    fn default() -> RabbitMqSettings {
        RabbitMqSettings { url: None, heartbeat: 60, connection_attempts: 3, queue_prefix: String::new() }
    }
}

/// Qdrant as the vector index. The primary store keeps every record and embedding; Qdrant
/// holds a copy of the vectors it searches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QdrantSettings {
    pub url: Option<String>,
    pub grpc_port: u16,
    pub timeout: f64,
    #[serde(serialize_with = "serialize_secret")]
    pub api_key: Option<SecretString>,
    pub collection: String,
    pub hnsw_m: u64,
    pub hnsw_ef_construct: u64,
    pub full_scan_threshold: u64,
    pub search_hnsw_ef: u64,
}

impl Default for QdrantSettings {
    fn default() -> QdrantSettings {
        QdrantSettings {
            url: None,
            grpc_port: 6334,
            timeout: 60.0,
            api_key: None,
            collection: "memories".to_owned(),
            hnsw_m: 16,
            hnsw_ef_construct: 100,
            full_scan_threshold: 10_000,
            search_hnsw_ef: 0,
        }
    }
}

impl QdrantSettings {
    /// The gRPC endpoint: `QDRANT_URL`'s scheme and host with `QDRANT_GRPC_PORT` (the URL
    /// usually names the REST port, 6333).
    pub fn grpc_url(&self) -> anyhow::Result<Option<String>> {
        let Some(url) = self.url.as_deref().filter(|url| !url.trim().is_empty()) else { return Ok(None) };
        let mut parsed = reqwest::Url::parse(url.trim()).map_err(|err| anyhow::anyhow!("QDRANT_URL {url:?}: {err}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            bail!("QDRANT_URL {url:?} must be an http:// or https:// URL with a host");
        }
        if parsed.set_port(Some(self.grpc_port)).is_err() {
            bail!("QDRANT_URL {url:?} cannot take a port");
        }
        Ok(Some(parsed.as_str().trim_end_matches('/').to_owned()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// May carry a password: never logged, redacted in `Debug`.
    #[serde(serialize_with = "serialize_secret")]
    pub url: Option<SecretString>,
    pub socket_timeout: f64,
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> RedisSettings {
        RedisSettings { url: None, socket_timeout: 5.0, key_prefix: "ciq".to_owned() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub lease_seconds: u64,
    pub max_attempts: u32,
    pub retry_base_seconds: u64,
    pub poll_interval_ms: u64,
    pub job_retention_seconds: u64,
    pub max_events_per_job: u32,
    pub prefetch_count: u16,
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings {
            concurrency: 2,
            lease_seconds: 60,
            max_attempts: 3,
            retry_base_seconds: 2,
            poll_interval_ms: 500,
            job_retention_seconds: 7 * 24 * 3600,
            max_events_per_job: 10_000,
            prefetch_count: 10,
        }
    }
}

/// The job table's upkeep.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// How often finished jobs past `worker.job_retention_seconds` are purged.
    pub purge_interval_seconds: u64,
}

impl Default for JobSettings {
    fn default() -> JobSettings {
        JobSettings { purge_interval_seconds: 60 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsolidationSettings {
    pub duplicate_threshold: f64,
    pub related_threshold: f64,
}

impl Default for ConsolidationSettings {
    fn default() -> ConsolidationSettings {
        let defaults = contextiq_core::generation::ConsolidationSettings::default();
        ConsolidationSettings {
            duplicate_threshold: defaults.duplicate_threshold,
            related_threshold: defaults.related_threshold,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSettings {
    pub provider: LlmProvider,
    pub model: Option<String>,
    pub base_url: Option<String>,
    #[serde(serialize_with = "serialize_secret")]
    pub api_key: Option<SecretString>,
    #[serde(serialize_with = "serialize_secret")]
    pub anthropic_api_key: Option<SecretString>,
    #[serde(serialize_with = "serialize_secret")]
    pub gemini_api_key: Option<SecretString>,
    #[serde(serialize_with = "serialize_secret")]
    pub azure_api_key: Option<SecretString>,
    pub api_version: String,
    pub timeout_seconds: u64,
}

impl Default for LlmSettings {
    fn default() -> LlmSettings {
        LlmSettings {
            provider: LlmProvider::None,
            model: None,
            base_url: None,
            api_key: None,
            anthropic_api_key: None,
            gemini_api_key: None,
            azure_api_key: None,
            api_version: "2024-10-21".to_owned(),
            timeout_seconds: 120,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingSettings {
    pub provider: EmbeddingProvider,
    pub model_path: PathBuf,
    pub model: String,
    pub base_url: String,
    #[serde(serialize_with = "serialize_secret")]
    pub api_key: Option<SecretString>,
    #[serde(serialize_with = "serialize_secret")]
    pub openai_api_key: Option<SecretString>,
    pub dimension: usize,
    pub send_dimensions: bool,
}

impl Default for EmbeddingSettings {
    fn default() -> EmbeddingSettings {
        EmbeddingSettings {
            provider: EmbeddingProvider::Local,
            model_path: PathBuf::from("./models/all-MiniLM-L6-v2"),
            model: "text-embedding-3-small".to_owned(),
            base_url: "https://api.openai.com/v1".to_owned(),
            api_key: None,
            openai_api_key: None,
            dimension: 1536,
            send_dimensions: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchSettings {
    pub lexical_weight: f64,
    pub candidates: usize,
    pub query_cache: usize,
    pub purge_interval_seconds: u64,
}

impl Default for SearchSettings {
    fn default() -> SearchSettings {
        let defaults = contextiq_core::SearchSettings::default();
        SearchSettings {
            lexical_weight: defaults.lexical_weight,
            candidates: defaults.candidates,
            query_cache: defaults.query_cache,
            purge_interval_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub require_auth: bool,
    #[serde(serialize_with = "serialize_secret")]
    pub jwt_secret_key: Option<SecretString>,
    pub jwt_issuer: String,
    pub require_auth_exceptions: PathPatterns,
    /// Revocations made outside this process (the CLI) take effect within this many seconds.
    pub key_cache_seconds: u64,
    /// 0: credentials without a rate of their own are not limited.
    pub rate_limit_per_second: u32,
    /// 0: twice the rate.
    pub rate_limit_burst: u32,
}

impl AuthSettings {
    /// The rate of credentials (or, without authentication, client addresses) that have none
    /// of their own; `None`: they are not limited.
    pub fn default_rate(&self) -> Option<contextiq_core::Rate> {
        let per_second = self.rate_limit_per_second;
        (per_second > 0).then(|| match self.rate_limit_burst {
            0 => contextiq_core::Rate::per_second(per_second),
            burst => contextiq_core::Rate { per_second, burst },
        })
    }
}

impl Default for AuthSettings {
    fn default() -> AuthSettings {
        AuthSettings {
            require_auth: true,
            jwt_secret_key: None,
            jwt_issuer: "contextiq".to_owned(),
            require_auth_exceptions: PathPatterns::from(
                "/health,/health/*,/docs,/docs/*,/openapi.json,/metrics".to_owned(),
            ),
            key_cache_seconds: 5,
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub role: Role,
    pub request_timeout_seconds: u64,
    pub shutdown_timeout_seconds: u64,
    /// `Host` values `/mcp` answers, comma-separated (`*`: any).
    pub mcp_allowed_hosts: String,
}

impl ServerSettings {
    /// `mcp_allowed_hosts` as a list.
    pub fn mcp_allowed_hosts(&self) -> Vec<String> {
        self.mcp_allowed_hosts.split(',').map(str::trim).filter(|host| !host.is_empty()).map(str::to_owned).collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// May carry a password: never logged, redacted in `Debug`.
    #[serde(serialize_with = "serialize_secret")]
    pub url: Option<SecretString>,
    pub pool_size: u32,
    pub max_overflow: u32,
    pub pool_recycle: u64,
    pub sqlite_durability: SqliteDurability,
    pub max_write_batch: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    pub default_ttl_seconds: Option<u64>,
    pub purge_interval_seconds: u64,
    pub max_events_per_request: usize,
    pub max_state_bytes: u64,
    pub tokenizer: contextiq_core::Tokenizer,
    pub compaction_every_events: Option<u32>,
    pub compaction_token_threshold: Option<u64>,
    pub compaction_keep_recent_events: u32,
}

impl SessionSettings {
    /// The compaction policy of sessions without their own; `None` when no trigger is set.
    pub fn compaction_policy(&self) -> Option<contextiq_core::CompactionPolicy> {
        (self.compaction_every_events.is_some() || self.compaction_token_threshold.is_some()).then_some(
            contextiq_core::CompactionPolicy {
                every_events: self.compaction_every_events,
                token_threshold: self.compaction_token_threshold,
                keep_recent_events: self.compaction_keep_recent_events,
            },
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
    /// Base URL of an OTLP/HTTP collector; traces are exported to `{endpoint}/v1/traces`.
    pub otlp_endpoint: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            service_name: "contextiq".to_owned(),
            data_dir: PathBuf::from("./data"),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            sessions: SessionSettings::default(),
            limits: LimitSettings::default(),
            log: LogSettings::default(),
            auth: AuthSettings::default(),
            embedding: EmbeddingSettings::default(),
            search: SearchSettings::default(),
            worker: WorkerSettings::default(),
            jobs: JobSettings::default(),
            consolidation: ConsolidationSettings::default(),
            llm: LlmSettings::default(),
            redis: RedisSettings::default(),
            rabbitmq: RabbitMqSettings::default(),
            qdrant: QdrantSettings::default(),
            gateway: GatewaySettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            bind: "127.0.0.1:8000".to_owned(),
            role: Role::All,
            request_timeout_seconds: 30,
            shutdown_timeout_seconds: 30,
            // DNS rebinding: a browser page must not reach a local server under another name.
            mcp_allowed_hosts: "localhost,127.0.0.1,::1".to_owned(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> DatabaseSettings {
        DatabaseSettings {
            url: None,
            pool_size: 8,
            max_overflow: 16,
            pool_recycle: 3600,
            sqlite_durability: SqliteDurability::Full,
            max_write_batch: 256,
        }
    }
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        let limits = contextiq_core::SessionLimits::default();
        SessionSettings {
            default_ttl_seconds: limits.default_ttl_seconds,
            purge_interval_seconds: 60,
            max_events_per_request: limits.max_events_per_request,
            max_state_bytes: limits.max_state_bytes,
            tokenizer: limits.tokenizer,
            compaction_every_events: None,
            compaction_token_threshold: None,
            compaction_keep_recent_events: 0,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> LimitSettings {
        LimitSettings { max_body_bytes: 1024 * 1024 }
    }
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings { format: LogFormat::Json, level: "info".to_owned(), otlp_endpoint: None }
    }
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub bind: Option<String>,
    pub role: Option<Role>,
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    /// Reads every layer from the process environment.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match &overrides.config_file {
            Some(path) => {
                if !path.exists() {
                    bail!("the configuration file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        figment = figment.merge(Env::raw().filter_map(|name| {
            ENVIRONMENT
                .iter()
                .find(|(env_name, _, _)| name.as_str().eq_ignore_ascii_case(env_name))
                .map(|(_, key, _)| (*key).into())
        }));
        if let Some(bind) = &overrides.bind {
            figment = figment.merge(Serialized::default("server.bind", bind));
        }
        if let Some(data_dir) = &overrides.data_dir {
            figment = figment.merge(Serialized::default("data_dir", data_dir));
        }
        if let Some(role) = &overrides.role {
            figment = figment.merge(Serialized::default("server.role", role));
        }
        let settings: Settings = figment.extract().context("invalid configuration")?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.server.role == Role::Gateway
            && (self.gateway.sessions_url.is_none() || self.gateway.memory_url.is_none())
        {
            bail!("the gateway role needs SESSIONS_URL and MEMORY_URL");
        }
        if self.server.role != Role::All && matches!(self.store_location()?, StoreLocation::Sqlite(_)) {
            bail!(
                "the {} role shares its database with other processes: set DATABASE_URL to PostgreSQL",
                self.server.role.as_str()
            );
        }
        if self.database.pool_size == 0 {
            bail!("DATABASE_POOL_SIZE must be at least 1");
        }
        if self.limits.max_body_bytes < 1024 {
            bail!("MAX_REQUEST_BODY_BYTES must be at least 1024");
        }
        let max_events = contextiq_core::limits::MAX_EVENTS_PER_REQUEST;
        if !(1..=max_events).contains(&self.sessions.max_events_per_request) {
            bail!("MAX_EVENTS_PER_REQUEST must be between 1 and {max_events}");
        }
        if self.sessions.default_ttl_seconds == Some(0) {
            bail!("SESSION_DEFAULT_TTL_SECONDS must be at least 1 (leave it unset for no TTL)");
        }
        if self.sessions.purge_interval_seconds == 0 {
            bail!("SESSION_PURGE_INTERVAL_SECONDS must be at least 1");
        }
        if let Some(policy) = self.sessions.compaction_policy() {
            policy.check("compaction").map_err(|_| {
                anyhow::anyhow!(
                    "COMPACTION_EVERY_EVENTS and COMPACTION_TOKEN_THRESHOLD must be at least 1, \
                     COMPACTION_KEEP_RECENT_EVENTS at most {}",
                    contextiq_core::limits::MAX_KEEP_RECENT_EVENTS
                )
            })?;
        }
        let max_rate = contextiq_core::limits::MAX_RATE_PER_SECOND;
        if self.auth.rate_limit_per_second > max_rate || self.auth.rate_limit_burst > 2 * max_rate {
            bail!("RATE_LIMIT_PER_SECOND must be at most {max_rate}, RATE_LIMIT_BURST at most {}", 2 * max_rate);
        }
        if self.auth.jwt_secret_key.as_ref().is_some_and(|secret| secret.expose_secret().len() < 32) {
            bail!("AUTH_JWT_SECRET_KEY must be at least 32 bytes long");
        }
        if !(0.0..=1.0).contains(&self.search.lexical_weight) {
            bail!("SEARCH_LEXICAL_WEIGHT must be between 0 and 1");
        }
        if !(1..=10_000).contains(&self.search.candidates) || self.search.purge_interval_seconds == 0 {
            bail!("SEARCH_CANDIDATES must be 1 to 10000 and MEMORY_PURGE_INTERVAL_SECONDS at least 1");
        }
        if self.search.query_cache > 1_000_000 {
            bail!("SEARCH_QUERY_CACHE must be at most 1000000");
        }
        if self.jobs.purge_interval_seconds == 0 {
            bail!("JOB_PURGE_INTERVAL_SECONDS must be at least 1");
        }
        if self.worker.max_events_per_job == 0 {
            bail!("WORKER_MAX_EVENTS_PER_JOB must be at least 1");
        }
        if self.worker.lease_seconds < 3 || self.worker.max_attempts == 0 || self.worker.poll_interval_ms == 0 {
            bail!(
                "WORKER_LEASE_SECONDS must be at least 3, WORKER_MAX_ATTEMPTS and WORKER_POLL_INTERVAL_MS at least 1"
            );
        }
        let thresholds = &self.consolidation;
        if !(0.0..=1.0).contains(&thresholds.related_threshold)
            || !(thresholds.related_threshold..=1.0).contains(&thresholds.duplicate_threshold)
        {
            bail!("consolidation thresholds must satisfy 0 <= RELATED <= DUPLICATE <= 1");
        }
        if self.llm.provider != LlmProvider::None && self.llm.model.is_none() {
            bail!("LLM_PROVIDER={} needs LLM_MODEL", self.llm.provider)
        }
        if matches!(self.llm.provider, LlmProvider::Azure | LlmProvider::OpenaiCompatible)
            && self.llm.base_url.is_none()
        {
            bail!("LLM_PROVIDER={} needs LLM_BASE_URL", self.llm.provider);
        }
        Ok(())
    }

    pub fn sqlite_durability(&self) -> contextiq_store_sqlite::Durability {
        match self.database.sqlite_durability {
            SqliteDurability::Full => contextiq_store_sqlite::Durability::Full,
            SqliteDurability::Normal => contextiq_store_sqlite::Durability::Normal,
        }
    }

    /// Where the primary store lives.
    pub fn store_location(&self) -> anyhow::Result<StoreLocation> {
        let Some(url) = &self.database.url else {
            return Ok(StoreLocation::Sqlite(self.data_dir.join("contextiq.db")));
        };
        let url = url.expose_secret();
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                bail!("DATABASE_URL names no SQLite file: use sqlite://PATH");
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(url.to_owned()));
        }
        let scheme = url.split(':').next().unwrap_or_default();
        bail!("DATABASE_URL scheme {scheme:?} is not supported: use postgres://..., sqlite://PATH or leave it unset")
    }

    /// Advice for values that work but are probably not what the operator meant.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.database.sqlite_durability == SqliteDurability::Normal {
            warnings.push(
                "DATABASE_SQLITE_DURABILITY=normal: writes survive a crash of the process, not a power loss".to_owned(),
            );
        }
        if !self.auth.require_auth {
            warnings.push(
                "AUTH_REQUIRE_AUTH=false: authentication is OFF, every request acts as an admin of the default org; \
                 for local development only"
                    .to_owned(),
            );
        }
        if self.server.request_timeout_seconds == 0 {
            warnings.push("REQUEST_TIMEOUT_SECONDS=0 disables the request timeout".to_owned());
        }
        warnings
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// The URL, which may hold a password.
    Postgres(String),
}

fn serialize_secret<S: serde::Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    // Serialisation only feeds the defaults layer of figment, so the value must survive it.
    match secret {
        Some(secret) => serializer.serialize_some(secret.expose_secret()),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_secrets() {
        let mut settings = Settings::default();
        settings.database.url = Some(SecretString::from("postgres://user:hunter2@db/contextiq"));
        settings.auth.jwt_secret_key = Some(SecretString::from("correct-horse-battery-staple-0123456789"));
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("correct-horse"), "{debug}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type.
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_CONFIG_FILE,
                "data_dir = \"/from/toml\"\n[server]\nbind = \"127.0.0.1:1\"\n[database]\npool_size = 3\n",
            )?;
            jail.set_env("CONTEXTIQ_BIND", "127.0.0.1:2");
            jail.set_env("DATABASE_POOL_SIZE", "5");
            let settings = Settings::load(&Overrides::default()).expect("loads");
            assert_eq!(settings.server.bind, "127.0.0.1:2");
            assert_eq!(settings.database.pool_size, 5);
            assert_eq!(settings.data_dir, PathBuf::from("/from/toml"));
            let overrides = Overrides { bind: Some("127.0.0.1:3".to_owned()), ..Overrides::default() };
            let settings = Settings::load(&overrides).expect("loads");
            assert_eq!(settings.server.bind, "127.0.0.1:3");
            Ok(())
        });
    }

    #[test]
    fn rejects_unknown_database_schemes() {
        let mut settings = Settings::default();
        settings.database.url = Some(SecretString::from("mysql://x"));
        assert!(settings.store_location().is_err());
        settings.database.url = Some(SecretString::from("sqlite:///tmp/x.db"));
        assert_eq!(settings.store_location().unwrap(), StoreLocation::Sqlite(PathBuf::from("/tmp/x.db")));
    }
}
