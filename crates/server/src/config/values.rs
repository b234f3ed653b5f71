//! The types of settings that take a name or a list written as one string: each parses and
//! renders exactly the text the configuration accepts.

use serde::{Deserialize, Serialize};

/// A setting that takes one of a few names: the enum, its names (`as_str`, `NAMES`), and
/// parsing (`FromStr`, which serde uses too, so a wrong value names the variable and the
/// accepted names).
macro_rules! setting_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($variable:literal, ignore_case = $ignore_case:literal) {
            $($(#[$variant_meta:meta])* $variant:ident => $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<$name, String> {
                let matches = |name: &str| if $ignore_case { name.eq_ignore_ascii_case(text) } else { name == text };
                $name::ALL.iter().copied().find(|value| matches(value.as_str())).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|value| value.as_str()).collect();
                    format!("{} {text:?} is not one of {}", $variable, names.join(", "))
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> Result<$name, String> {
                text.parse()
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> &'static str {
                value.as_str()
            }
        }
    };
}

setting_enum! {
    /// What one process serves and runs. `all` is the single-process deployment; the others
    /// split it into services behind a gateway, sharing the same database, Redis and RabbitMQ.
    /// What each one serves, runs and builds is its [`crate::plan::Plan`].
    #[derive(clap::ValueEnum)]
    Role("CONTEXTIQ_ROLE", ignore_case = false) {
        All => "all",
        /// Authenticates and routes `/api/v1/*` to the sessions and memory roles.
        Gateway => "gateway",
        /// `/api/v1/sessions*` and `/api/v1/keys*`.
        Sessions => "sessions",
        /// `/api/v1/memories*` and `/api/v1/jobs*`; announces queued jobs to the broker.
        Memory => "memory",
        /// Runs generation jobs; serves only health and metrics.
        Worker => "worker",
    }
}

setting_enum! {
    /// Where embeddings come from.
    EmbeddingProvider("EMBEDDING_PROVIDER", ignore_case = false) {
        /// all-MiniLM-L6-v2 on the CPU, from `EMBEDDING_MODEL_PATH`.
        Local => "local",
        /// The OpenAI embeddings protocol (OpenAI, Azure, Ollama, vLLM, TEI, LiteLLM).
        Openai => "openai",
    }
}

setting_enum! {
    /// The chat model of the llm extractor; `none`: jobs asking for it are refused.
    LlmProvider("LLM_PROVIDER", ignore_case = false) {
        None => "none",
        Openai => "openai",
        Anthropic => "anthropic",
        Gemini => "gemini",
        /// Azure OpenAI: needs `LLM_BASE_URL`, the resource URL.
        Azure => "azure",
        /// Any OpenAI-compatible server (Ollama, vLLM, LiteLLM): needs `LLM_BASE_URL`.
        OpenaiCompatible => "openai_compatible",
    }
}

setting_enum! {
    /// How SQLite commits.
    SqliteDurability("DATABASE_SQLITE_DURABILITY", ignore_case = true) {
        /// fsync per commit: an acknowledged write survives a power loss.
        Full => "full",
        /// Survives a crash of the process, not of the machine.
        Normal => "normal",
    }
}

setting_enum! {
    LogFormat("LOG_FORMAT", ignore_case = false) {
        Json => "json",
        Pretty => "pretty",
    }
}

/// The origins browsers may call the API from (`CORS_ORIGINS`): written as one string, `*` or
/// a comma-separated list; empty: no CORS headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CorsOrigins {
    #[default]
    None,
    Any,
    List(Vec<String>),
}

impl From<String> for CorsOrigins {
    fn from(text: String) -> CorsOrigins {
        match text.trim() {
            "" => CorsOrigins::None,
            "*" => CorsOrigins::Any,
            list => CorsOrigins::List(
                list.split(',').map(str::trim).filter(|origin| !origin.is_empty()).map(str::to_owned).collect(),
            ),
        }
    }
}

impl From<CorsOrigins> for String {
    fn from(origins: CorsOrigins) -> String {
        match origins {
            CorsOrigins::None => String::new(),
            CorsOrigins::Any => "*".to_owned(),
            CorsOrigins::List(list) => list.join(","),
        }
    }
}

/// Paths served without credentials (`AUTH_REQUIRE_AUTH_EXCEPTIONS`), written as one
/// comma-separated string: `/x` matches exactly, `/x/*` anything below `/x/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct PathPatterns(pub Vec<PathPattern>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    /// The prefix, with its trailing `/`.
    Below(String),
}

impl PathPattern {
    fn parse(text: &str) -> Option<PathPattern> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        Some(match text.strip_suffix('*') {
            Some(prefix) => PathPattern::Below(prefix.to_owned()),
            None => PathPattern::Exact(text.to_owned()),
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => path == exact,
            PathPattern::Below(prefix) => path.starts_with(prefix.as_str()),
        }
    }
}

impl PathPatterns {
    pub fn matches(&self, path: &str) -> bool {
        self.0.iter().any(|pattern| pattern.matches(path))
    }
}

impl From<String> for PathPatterns {
    fn from(text: String) -> PathPatterns {
        PathPatterns(text.split(',').filter_map(PathPattern::parse).collect())
    }
}

impl From<PathPatterns> for String {
    fn from(patterns: PathPatterns) -> String {
        let texts: Vec<String> = patterns
            .0
            .into_iter()
            .map(|pattern| match pattern {
                PathPattern::Exact(exact) => exact,
                PathPattern::Below(prefix) => format!("{prefix}*"),
            })
            .collect();
        texts.join(",")
    }
}
