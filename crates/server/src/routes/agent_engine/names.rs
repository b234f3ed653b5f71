//! Resource names of the Agent Engine surface: what a request path names, and the full names
//! answers carry. Google's clients send `/v1beta1/projects/{p}/locations/{l}/reasoningEngines/{e}/...`
//! or, in express and collection mode, `/v1beta1/reasoningEngines/{e}/...`; an answer names
//! resources with the prefix its request used, so a client can send any name back as a path.

use contextiq_core::{EngineId, Error as CoreError};

use crate::error::ApiError;

/// The engine a request is for, and how its names are spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnginePath {
    /// `projects/{p}/locations/{l}/`, or empty.
    pub prefix: String,
    pub engine: EngineId,
}

impl EnginePath {
    /// `[projects/{p}/locations/{l}/]reasoningEngines/{e}`.
    pub fn name(&self) -> String {
        format!("{}reasoningEngines/{}", self.prefix, self.engine)
    }

    pub fn session(&self, session: &str) -> String {
        format!("{}/sessions/{session}", self.name())
    }

    pub fn event(&self, session: &str, event: &str) -> String {
        format!("{}/sessions/{session}/events/{event}", self.name())
    }

    pub fn memory(&self, memory: &str) -> String {
        format!("{}/memories/{memory}", self.name())
    }

    pub fn revision(&self, memory: &str, revision: &str) -> String {
        format!("{}/memories/{memory}/revisions/{revision}", self.name())
    }

    pub fn operation(&self, operation: &str) -> String {
        format!("{}/operations/{operation}", self.name())
    }
}

/// The custom methods on the memories collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoriesMethod {
    Generate,
    IngestEvents,
    Retrieve,
    RetrieveProfiles,
    Purge,
}

/// What a path under an engine names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Engine,
    Sessions,
    Session(String),
    AppendEvent(String),
    Events(String),
    SessionOperation(String, String),
    Memories,
    MemoriesMethod(MemoriesMethod),
    Memory(String),
    Rollback(String),
    Revisions(String),
    Revision(String, String),
    MemoryOperation(String, String),
    Operation(String),
}

/// Which role serves a target in the distributed deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sessions,
    Memory,
}

impl Target {
    pub fn service(&self) -> Service {
        match self {
            Target::Engine
            | Target::Sessions
            | Target::Session(_)
            | Target::AppendEvent(_)
            | Target::Events(_)
            | Target::SessionOperation(..) => Service::Sessions,
            _ => Service::Memory,
        }
    }
}

/// The engine and target of a path after `/v1beta1/`; `None` when it names nothing here.
pub fn parse(path: &str) -> Result<Option<(EnginePath, Target)>, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match segments.as_slice() {
        ["projects", project, "locations", location, rest @ ..] => {
            check_segment("project", project)?;
            check_segment("location", location)?;
            (format!("projects/{project}/locations/{location}/"), rest)
        }
        rest => (String::new(), rest),
    };
    let ["reasoningEngines", engine, rest @ ..] = rest else { return Ok(None) };
    let engine = EngineId::parse(engine, "reasoningEngine").map_err(ApiError::Domain)?;
    let id = |field: &str, text: &str| check_id(field, text).map(|()| text.to_owned());
    let target = match rest {
        [] => Target::Engine,
        ["sessions"] => Target::Sessions,
        ["sessions", session] => match session.split_once(':') {
            Some((session, "appendEvent")) => Target::AppendEvent(id("session", session)?),
            Some(_) => return Ok(None),
            None => Target::Session(id("session", session)?),
        },
        ["sessions", session, "events"] => Target::Events(id("session", session)?),
        ["sessions", session, "operations", operation] => {
            Target::SessionOperation(id("session", session)?, id("operation", operation)?)
        }
        ["memories"] => Target::Memories,
        [method] => match method.strip_prefix("memories:") {
            Some("generate") => Target::MemoriesMethod(MemoriesMethod::Generate),
            Some("ingestEvents") => Target::MemoriesMethod(MemoriesMethod::IngestEvents),
            Some("retrieve") => Target::MemoriesMethod(MemoriesMethod::Retrieve),
            Some("retrieveProfiles") => Target::MemoriesMethod(MemoriesMethod::RetrieveProfiles),
            Some("purge") => Target::MemoriesMethod(MemoriesMethod::Purge),
            _ => return Ok(None),
        },
        ["memories", memory] => match memory.split_once(':') {
            Some((memory, "rollback")) => Target::Rollback(id("memory", memory)?),
            Some(_) => return Ok(None),
            None => Target::Memory(id("memory", memory)?),
        },
        ["memories", memory, "revisions"] => Target::Revisions(id("memory", memory)?),
        ["memories", memory, "revisions", revision] => {
            Target::Revision(id("memory", memory)?, id("revision", revision)?)
        }
        ["memories", memory, "operations", operation] => {
            Target::MemoryOperation(id("memory", memory)?, id("operation", operation)?)
        }
        ["operations", operation] => Target::Operation(id("operation", operation)?),
        _ => return Ok(None),
    };
    Ok(Some((EnginePath { prefix, engine }, target)))
}

/// The longest id a client may give a session or memory.
pub const MAX_ID_CHARS: usize = 128;

/// Ids are what ADK accepts for a session id, `[A-Za-z0-9_-]`, 1 to 128 characters (UUIDs
/// are such ids).
pub fn check_id(field: &str, text: &str) -> Result<(), ApiError> {
    let valid = (1..=MAX_ID_CHARS).contains(&text.len())
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    match valid {
        true => Ok(()),
        false => Err(ApiError::Domain(CoreError::validation(
            field,
            format!("an id is 1 to {MAX_ID_CHARS} characters of A-Z, a-z, 0-9, '_' and '-'"),
        ))),
    }
}

fn check_segment(field: &str, text: &str) -> Result<(), ApiError> {
    let valid = (1..=MAX_ID_CHARS).contains(&text.len())
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_-.".contains(&byte));
    match valid {
        true => Ok(()),
        false => Err(ApiError::Domain(CoreError::validation(
            field,
            format!("1 to {MAX_ID_CHARS} characters of A-Z, a-z, 0-9, '_', '-' and '.'"),
        ))),
    }
}

/// The session a full or relative session name (as `vertexSessionSource.session` carries it)
/// names, if it is a session of `engine`.
pub fn session_of(name: &str, engine: &EnginePath) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::Domain(CoreError::validation(
            "vertexSessionSource.session",
            format!("must name a session of {}: [projects/P/locations/L/]reasoningEngines/E/sessions/S", engine.name()),
        ))
    };
    match parse(name.trim_start_matches("/v1beta1/")).map_err(|_| invalid())? {
        Some((path, Target::Session(session))) if path.engine == engine.engine => Ok(session),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_path_forms_name_the_same_targets() {
        for prefix in ["projects/p1/locations/us-central1/", ""] {
            let parsed = |rest: &str| parse(&format!("{prefix}reasoningEngines/agent-1{rest}")).unwrap().unwrap();
            let (path, target) = parsed("/sessions/s1:appendEvent");
            assert_eq!(path.prefix, prefix);
            assert_eq!(path.engine.as_str(), "agent-1");
            assert_eq!(target, Target::AppendEvent("s1".to_owned()));
            assert_eq!(parsed("").1, Target::Engine);
            assert_eq!(parsed("/sessions").1, Target::Sessions);
            assert_eq!(parsed("/sessions/s1/events").1, Target::Events("s1".to_owned()));
            assert_eq!(parsed("/memories:retrieve").1, Target::MemoriesMethod(MemoriesMethod::Retrieve));
            assert_eq!(parsed("/memories/m1:rollback").1, Target::Rollback("m1".to_owned()));
            assert_eq!(parsed("/memories/m1/revisions/r1").1, Target::Revision("m1".to_owned(), "r1".to_owned()));
            assert_eq!(parsed("/operations/op1").1, Target::Operation("op1".to_owned()));
            assert_eq!(path.session("s1"), format!("{prefix}reasoningEngines/agent-1/sessions/s1"));
        }
    }

    #[test]
    fn unknown_paths_name_nothing_and_bad_ids_are_invalid() {
        assert_eq!(parse("reasoningEngines/e/sessions/s:explode").unwrap(), None);
        assert_eq!(parse("reasoningEngines/e/memories:explode").unwrap(), None);
        assert_eq!(parse("models/gemini").unwrap(), None);
        assert_eq!(parse("reasoningEngines/e/sessions/s/events/x/y").unwrap(), None);
        assert!(parse("reasoningEngines/bad engine/sessions").is_err());
        assert!(parse("reasoningEngines/e/sessions/a.b").is_err());
        assert!(parse(&format!("reasoningEngines/e/memories/{}", "x".repeat(129))).is_err());
    }

    #[test]
    fn a_session_source_must_name_a_session_of_the_engine() {
        let (engine, _) = parse("projects/p/locations/l/reasoningEngines/e1").unwrap().unwrap();
        assert_eq!(session_of("projects/p/locations/l/reasoningEngines/e1/sessions/s1", &engine).unwrap(), "s1");
        assert_eq!(session_of("reasoningEngines/e1/sessions/s1", &engine).unwrap(), "s1");
        assert!(session_of("reasoningEngines/e2/sessions/s1", &engine).is_err());
        assert!(session_of("reasoningEngines/e1/memories/m1", &engine).is_err());
    }
}
