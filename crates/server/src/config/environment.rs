//! The environment variables of the settings, and the help and documentation rendered from
//! them with the defaults of [`Settings::default`].

use super::Settings;

/// Environment variables: name, settings key, meaning. The names are the seed's where it
/// has one. Defaults are not written here: `--help` renders them from [`Settings::default`],
/// and a test checks that this table, the settings tree and README's table agree.
pub const ENVIRONMENT: &[(&str, &str, &str)] = &[
    ("CONTEXTIQ_BIND", "server.bind", "Listen address; port 0 picks a free port"),
    ("CONTEXTIQ_DATA_DIR", "data_dir", "Directory of the embedded database"),
    ("CONTEXTIQ_ROLE", "server.role", "all, gateway, sessions, memory or worker: what this process serves and runs"),
    (
        "MCP_ALLOWED_HOSTS",
        "server.mcp_allowed_hosts",
        "Host header values /mcp accepts, comma-separated, or * (set your public host name)",
    ),
    ("SESSIONS_URL", "gateway.sessions_url", "Gateway: base URL of the sessions role (sessions and keys)"),
    ("MEMORY_URL", "gateway.memory_url", "Gateway: base URL of the memory role (memories and jobs)"),
    ("CORS_ORIGINS", "gateway.cors_origins", "Origins browsers may call the API from, comma-separated, or *"),
    (
        "EMBEDDING_PROVIDER",
        "embedding.provider",
        "local (all-MiniLM-L6-v2 on the CPU) or openai (any OpenAI-compatible API)",
    ),
    ("EMBEDDING_MODEL_PATH", "embedding.model_path", "Directory of the local model"),
    ("EMBEDDING_MODEL", "embedding.model", "Model name for the openai provider"),
    ("EMBEDDING_BASE_URL", "embedding.base_url", "Base URL of the openai provider"),
    ("EMBEDDING_API_KEY", "embedding.api_key", "API key of the openai provider (falls back to OPENAI_API_KEY)"),
    ("OPENAI_API_KEY", "embedding.openai_api_key", "OpenAI API key"),
    ("EMBEDDING_DIMENSION", "embedding.dimension", "Vector size of the openai provider's model"),
    (
        "EMBEDDING_SEND_DIMENSIONS",
        "embedding.send_dimensions",
        "Ask the openai provider for EMBEDDING_DIMENSION (text-embedding-3 models)",
    ),
    ("SEARCH_LEXICAL_WEIGHT", "search.lexical_weight", "Weight of BM25 against embeddings in hybrid search, 0 to 1"),
    ("SEARCH_CANDIDATES", "search.candidates", "Candidates taken from each index before fusion"),
    ("SEARCH_QUERY_CACHE", "search.query_cache", "Query vectors kept for repeated searches (0: none)"),
    ("MEMORY_PURGE_INTERVAL_SECONDS", "search.purge_interval_seconds", "How often expired memories are purged"),
    (
        "JOB_PURGE_INTERVAL_SECONDS",
        "jobs.purge_interval_seconds",
        "How often finished jobs older than JOB_RETENTION_SECONDS are purged",
    ),
    (
        "DATABASE_URL",
        "database.url",
        "Primary store: unset (SQLite in DATA_DIR), sqlite://PATH or postgres://USER@HOST/DB",
    ),
    ("DATABASE_POOL_SIZE", "database.pool_size", "Connections to the database (SQLite: readers)"),
    (
        "DATABASE_MAX_OVERFLOW",
        "database.max_overflow",
        "PostgreSQL: connections opened beyond the pool size under load",
    ),
    ("DATABASE_POOL_RECYCLE", "database.pool_recycle", "PostgreSQL: seconds after which a connection is replaced"),
    (
        "REDIS_URL",
        "redis.url",
        "Redis (redis://HOST:PORT/DB): shared cache and rate limits; unset: no cache, in-process limits",
    ),
    ("REDIS_SOCKET_TIMEOUT", "redis.socket_timeout", "Seconds one Redis command may take"),
    ("REDIS_KEY_PREFIX", "redis.key_prefix", "Prefix of every Redis key, so deployments can share a server"),
    (
        "RABBITMQ_URL",
        "rabbitmq.url",
        "RabbitMQ (amqp://USER:PASSWORD@HOST:PORT/VHOST): generation jobs go through its durable queues; unset: in-process",
    ),
    ("RABBITMQ_HEARTBEAT", "rabbitmq.heartbeat", "AMQP heartbeat in seconds"),
    (
        "RABBITMQ_QUEUE_PREFIX",
        "rabbitmq.queue_prefix",
        "Prefix of the queue names, so deployments can share a virtual host",
    ),
    (
        "RABBITMQ_CONNECTION_ATTEMPTS",
        "rabbitmq.connection_attempts",
        "Attempts to reach RabbitMQ at start before giving up",
    ),
    (
        "QDRANT_URL",
        "qdrant.url",
        "Qdrant (http://HOST:6333): memory vectors live in its collection; unset: in the primary store",
    ),
    ("QDRANT_GRPC_PORT", "qdrant.grpc_port", "Qdrant's gRPC port on QDRANT_URL's host"),
    ("QDRANT_TIMEOUT", "qdrant.timeout", "Seconds one Qdrant request may take"),
    ("QDRANT_API_KEY", "qdrant.api_key", "Qdrant API key"),
    ("QDRANT_COLLECTION", "qdrant.collection", "The Qdrant collection of memory vectors"),
    ("QDRANT_HNSW_M", "qdrant.hnsw_m", "HNSW edges per node, when the collection is created"),
    (
        "QDRANT_HNSW_EF_CONSTRUCT",
        "qdrant.hnsw_ef_construct",
        "HNSW build-time candidates, when the collection is created",
    ),
    (
        "QDRANT_FULL_SCAN_THRESHOLD",
        "qdrant.full_scan_threshold",
        "KiB of vectors under which a filtered search scans exactly, when the collection is created",
    ),
    ("QDRANT_SEARCH_HNSW_EF", "qdrant.search_hnsw_ef", "HNSW search-time candidates; 0 lets Qdrant choose"),
    ("WORKER_PREFETCH_COUNT", "worker.prefetch_count", "RabbitMQ messages a process holds unacknowledged"),
    (
        "DATABASE_MAX_WRITE_BATCH",
        "database.max_write_batch",
        "SQLite: most writes the writer commits in one transaction (group commit)",
    ),
    (
        "DATABASE_SQLITE_DURABILITY",
        "database.sqlite_durability",
        "full (fsync per commit) or normal (survives process crashes, not power loss)",
    ),
    ("REQUEST_TIMEOUT_SECONDS", "server.request_timeout_seconds", "Longest a request may run; 503 after"),
    ("SHUTDOWN_TIMEOUT_SECONDS", "server.shutdown_timeout_seconds", "Grace period for in-flight requests"),
    ("MAX_REQUEST_BODY_BYTES", "limits.max_body_bytes", "Largest request body; 413 beyond"),
    ("MAX_EVENTS_PER_REQUEST", "sessions.max_events_per_request", "Events in one append"),
    ("MAX_STATE_BYTES", "sessions.max_state_bytes", "Largest session state, or metadata, as JSON"),
    ("SESSION_DEFAULT_TTL_SECONDS", "sessions.default_ttl_seconds", "TTL of sessions created without one"),
    ("SESSION_PURGE_INTERVAL_SECONDS", "sessions.purge_interval_seconds", "How often expired sessions are purged"),
    (
        "SESSION_TOKENIZER",
        "sessions.tokenizer",
        "Counts event tokens: o200k_base, cl100k_base, or approximate (4 bytes a token)",
    ),
    (
        "COMPACTION_EVERY_EVENTS",
        "sessions.compaction_every_events",
        "Compact a session every N new events (sessions without a policy of their own)",
    ),
    (
        "COMPACTION_TOKEN_THRESHOLD",
        "sessions.compaction_token_threshold",
        "Compact a session once its uncompacted events hold this many tokens",
    ),
    (
        "COMPACTION_KEEP_RECENT_EVENTS",
        "sessions.compaction_keep_recent_events",
        "Newest events a compaction leaves out",
    ),
    ("AUTH_REQUIRE_AUTH", "auth.require_auth", "false turns authentication off, for local development only"),
    ("AUTH_JWT_SECRET_KEY", "auth.jwt_secret_key", "HS256 secret of JWT bearer tokens; unset: JWTs are refused"),
    ("AUTH_JWT_ISSUER", "auth.jwt_issuer", "The iss every JWT must carry"),
    (
        "AUTH_REQUIRE_AUTH_EXCEPTIONS",
        "auth.require_auth_exceptions",
        "Comma-separated paths served without credentials; /x/* matches below /x",
    ),
    (
        "AUTH_KEY_CACHE_SECONDS",
        "auth.key_cache_seconds",
        "How long a found API key is trusted without a lookup; 0: always look up",
    ),
    (
        "RATE_LIMIT_PER_SECOND",
        "auth.rate_limit_per_second",
        "Requests per second per credential without a rate of its own (per client address with AUTH_REQUIRE_AUTH=false), at most 100000; 0: not limited",
    ),
    (
        "RATE_LIMIT_BURST",
        "auth.rate_limit_burst",
        "Requests a credential may burst above RATE_LIMIT_PER_SECOND; 0: twice the rate",
    ),
    ("WORKER_CONCURRENCY", "worker.concurrency", "Memory generation jobs run at once in this process; 0: none"),
    (
        "WORKER_LEASE_SECONDS",
        "worker.lease_seconds",
        "A running job is taken over by another worker when its lease lapses this long",
    ),
    ("WORKER_MAX_ATTEMPTS", "worker.max_attempts", "Attempts before a job is dead-lettered as failed"),
    (
        "WORKER_RETRY_BASE_SECONDS",
        "worker.retry_base_seconds",
        "Wait before the first retry of a failed job; doubles per attempt",
    ),
    (
        "WORKER_POLL_INTERVAL_MS",
        "worker.poll_interval_ms",
        "How often idle workers look for due retries and lapsed leases",
    ),
    (
        "WORKER_MAX_EVENTS_PER_JOB",
        "worker.max_events_per_job",
        "Session events one job reads; a job leaves the rest for the next generate",
    ),
    (
        "JOB_RETENTION_SECONDS",
        "worker.job_retention_seconds",
        "How long finished jobs stay queryable before they are purged",
    ),
    (
        "CONSOLIDATION_DUPLICATE_THRESHOLD",
        "consolidation.duplicate_threshold",
        "Cosine similarity at which an extracted fact counts as already known",
    ),
    (
        "CONSOLIDATION_RELATED_THRESHOLD",
        "consolidation.related_threshold",
        "Similarity from which a fact is ambiguous and judged by the LLM (llm extractor)",
    ),
    ("LLM_PROVIDER", "llm.provider", "none, openai, anthropic, gemini, azure or openai_compatible"),
    ("LLM_MODEL", "llm.model", "Model name (the deployment name for azure), e.g. gpt-4o-mini"),
    ("LLM_BASE_URL", "llm.base_url", "Endpoint override: Ollama, vLLM, LiteLLM, an Azure resource URL"),
    ("LLM_API_KEY", "llm.api_key", "API key of the LLM provider (else OPENAI_API_KEY, ANTHROPIC_API_KEY, ...)"),
    ("ANTHROPIC_API_KEY", "llm.anthropic_api_key", "Anthropic API key"),
    ("GEMINI_API_KEY", "llm.gemini_api_key", "Google Gemini API key"),
    ("AZURE_OPENAI_API_KEY", "llm.azure_api_key", "Azure OpenAI API key"),
    ("LLM_API_VERSION", "llm.api_version", "Azure OpenAI api-version"),
    ("LLM_TIMEOUT_SECONDS", "llm.timeout_seconds", "Longest one LLM call may take"),
    ("SERVICE_NAME", "service_name", "The service label of logs and metrics"),
    ("LOG_FORMAT", "log.format", "json or pretty"),
    ("LOG_LEVEL", "log.level", "A tracing filter, e.g. info or contextiq_server=debug"),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "log.otlp_endpoint",
        "OTLP/HTTP collector (e.g. http://collector:4318): spans are exported there; unset: none",
    ),
];

impl Settings {
    /// The environment table, for `--help`, with the defaults of [`Settings::default`].
    pub fn environment_help() -> String {
        let mut help = String::from("Configuration (environment variables; also [section] keys in contextiq.toml):\n");
        for (name, key, meaning) in ENVIRONMENT {
            let default = default_of(key).map(|value| format!(" [default: {value}]")).unwrap_or_default();
            help.push_str(&format!("  {name:<32} {meaning}{default}\n  {:<32} (key: {key})\n", ""));
        }
        help
    }
}

/// The default of a settings key as written in a configuration (`60`, `0.5`, `full`), from
/// [`Settings::default`]; `None` when it has none (unset or empty).
pub fn default_of(key: &str) -> Option<String> {
    let defaults = serde_json::to_value(Settings::default()).expect("the settings serialise");
    let value = key.split('.').try_fold(&defaults, |value, part| value.get(part))?;
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) if text.is_empty() => None,
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// The keys of every leaf of the settings tree (`server.bind`, ...).
    fn settings_keys() -> BTreeSet<String> {
        fn walk(prefix: &str, value: &serde_json::Value, keys: &mut BTreeSet<String>) {
            match value {
                serde_json::Value::Object(fields) => {
                    for (name, value) in fields {
                        let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                        walk(&key, value, keys);
                    }
                }
                _ => {
                    keys.insert(prefix.to_owned());
                }
            }
        }
        let mut keys = BTreeSet::new();
        walk("", &serde_json::to_value(Settings::default()).unwrap(), &mut keys);
        keys
    }

    #[test]
    fn every_setting_has_one_variable_and_every_variable_a_setting() {
        let documented: BTreeSet<String> = ENVIRONMENT.iter().map(|(_, key, _)| (*key).to_owned()).collect();
        assert_eq!(documented.len(), ENVIRONMENT.len(), "one variable per key");
        let names: BTreeSet<&str> = ENVIRONMENT.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(names.len(), ENVIRONMENT.len(), "one key per variable");
        assert_eq!(documented, settings_keys());
    }

    /// README's configuration table: each row names variables of [`ENVIRONMENT`] with their
    /// key, and a default that is [`Settings::default`]'s (in backquotes), or none (unset).
    #[test]
    fn the_readme_table_agrees_with_the_settings() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
        let table = readme.split("| variable | settings key | default | meaning |").nth(1).expect("the table");
        let variables: BTreeMap<&str, &str> = ENVIRONMENT.iter().map(|(name, key, _)| (*name, *key)).collect();
        let mut seen = BTreeSet::new();
        for row in table.lines().skip(2).take_while(|line| line.starts_with('|')) {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let [names, key, default, _meaning] = cells[..] else { panic!("not a row of four cells: {row}") };
            let key = key.trim_matches('`');
            for name in names.split(" / ").map(|name| name.trim_matches('`')) {
                assert_eq!(variables.get(name), Some(&key), "README: {name} is not the variable of {key}");
                seen.insert(name);
            }
            let documented = default.strip_prefix('`').and_then(|default| default.strip_suffix('`'));
            assert_eq!(documented.map(str::to_owned), default_of(key), "README: the default of {key}");
        }
        let missing: Vec<&&str> = variables.keys().filter(|name| !seen.contains(**name)).collect();
        assert!(missing.is_empty(), "README does not document {missing:?}");
    }

    #[test]
    fn help_shows_the_defaults_of_the_settings() {
        let help = Settings::environment_help();
        assert!(help.contains("Listen address; port 0 picks a free port [default: 127.0.0.1:8000]"), "{help}");
        assert!(help.contains("[default: 0.5]"), "{help}");
        // No default: nothing is appended.
        assert!(help.contains("sqlite://PATH or postgres://USER@HOST/DB\n"), "{help}");
    }
}
