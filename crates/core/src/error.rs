use std::fmt;

/// What can go wrong in the domain. The server maps each variant to one HTTP status in one place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resource does not exist, has expired, or belongs to another tenant: callers cannot
    /// tell these apart, by design.
    #[error("{resource} not found")]
    NotFound { resource: Resource },
    /// A client named the record it creates, and a record of that name exists already (live,
    /// deleted or expired: a name is never reused).
    #[error("{resource} already exists")]
    AlreadyExists { resource: Resource },
    /// A request field breaks a rule; `field` is its JSON path as the client sent it.
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    /// The credential may not do this (outside its scope constraint, say). Only for acts that
    /// reveal nothing: a resource out of reach reads as `NotFound` instead.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A configured size or count limit was exceeded.
    #[error("{field}: {what} exceeds the limit of {limit}")]
    LimitExceeded { field: String, what: String, limit: u64 },
    /// The backend failed; the message is for logs, never for clients.
    #[error("store error: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The embedding model failed or is misconfigured; the message is for logs.
    #[error("embedding error: {0}")]
    Embedding(String),
    /// The store is shutting down and accepts no more work.
    #[error("store is shutting down")]
    Unavailable,
    /// The backend cannot serve now: unreachable, restarting, out of connections, memory or
    /// disk, or locked. A retry may succeed; the message is for logs.
    #[error("store unavailable: {0}")]
    Outage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Session,
    ApiKey,
    Memory,
    Job,
    /// A memory's revision.
    Revision,
    /// An operation of the Agent Engine surface.
    Operation,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Session => "session",
            Resource::ApiKey => "API key",
            Resource::Memory => "memory",
            Resource::Job => "job",
            Resource::Revision => "revision",
            Resource::Operation => "operation",
        })
    }
}

impl Error {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Validation { field: field.into(), message: message.into() }
    }

    pub fn session_not_found() -> Error {
        Error::NotFound { resource: Resource::Session }
    }

    pub fn memory_not_found() -> Error {
        Error::NotFound { resource: Resource::Memory }
    }

    pub fn key_not_found() -> Error {
        Error::NotFound { resource: Resource::ApiKey }
    }

    pub fn store(err: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Store(Box::new(err))
    }

    pub fn outage(err: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Outage(Box::new(err))
    }
}
