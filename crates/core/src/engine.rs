//! Reasoning engines: partitions of an org, as Agent Engine has one Memory Bank and one set of
//! sessions per deployed agent. Two engines of one org never see each other's sessions,
//! memories or jobs; an engine needs no creation step (its first use creates it).
//!
//! An engine is not a column: the stores partition every row by its org, so an engine's rows
//! are filed under the org's partition for that engine ([`OrgId::partition`]), and every rule
//! that confines a request to its org (every store call takes the org) confines it to its
//! engine too. The default engine's partition is the org itself, so a deployment that never
//! names an engine reads exactly what it stored before engines existed.

use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Access, Error, OrgId, Result};

/// Separates an org from an engine in a partition key. Org ids may hold no control character
/// (`check_org_id`) and engine ids are `[A-Za-z0-9_-]`, so no org can be mistaken for the
/// partition of another.
const PARTITION_SEPARATOR: char = '\u{1f}';

pub const MAX_ENGINE_ID_CHARS: usize = 63;

/// The name of a reasoning engine: 1 to 63 characters of `[A-Za-z0-9_-]` (what ADK's ids and
/// Google's numeric engine ids are made of).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineId(String);

impl EngineId {
    pub const DEFAULT: &'static str = "default";

    pub fn default_engine() -> EngineId {
        EngineId(EngineId::DEFAULT.to_owned())
    }

    /// Refuses anything but 1 to 63 characters of `[A-Za-z0-9_-]`, naming `field`.
    pub fn parse(text: &str, field: &str) -> Result<EngineId> {
        let valid = (1..=MAX_ENGINE_ID_CHARS).contains(&text.len())
            && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
        match valid {
            true => Ok(EngineId(text.to_owned())),
            false => Err(Error::validation(
                field,
                format!("an engine id is 1 to {MAX_ENGINE_ID_CHARS} characters of A-Z, a-z, 0-9, '_' and '-'"),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == EngineId::DEFAULT
    }
}

impl fmt::Display for EngineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl OrgId {
    /// The partition of `engine` in this org, under which the stores file its rows: the org
    /// itself for the default engine.
    pub fn partition(&self, engine: &EngineId) -> OrgId {
        match engine.is_default() {
            true => self.clone(),
            false => OrgId::new(format!("{}{PARTITION_SEPARATOR}{}", self.as_str(), engine.as_str())),
        }
    }
}

/// Org ids are free text, but hold no control character: the partition keys of engines rely
/// on it.
pub fn check_org_id(org_id: &str, max_chars: usize) -> Result<()> {
    if org_id.trim().is_empty() || org_id.chars().count() > max_chars || org_id.chars().any(char::is_control) {
        return Err(Error::validation(
            "org_id",
            format!("must be 1 to {max_chars} characters, not blank, without control characters"),
        ));
    }
    Ok(())
}

impl Access {
    /// The same access, confined to `engine` of its org.
    pub fn in_engine(&self, engine: &EngineId) -> Access {
        Access { org_id: self.org_id.partition(engine), scope: self.scope.clone() }
    }
}

/// The record id a client-chosen name stands for (Agent Engine lets a client name the session
/// or memory it creates): a UUID that is the name itself when the name is a UUID, else one
/// derived from the name, its kind and the partition, so equal names of one kind in one
/// partition are one record and nothing else collides with it.
pub fn id_for_name(partition: &OrgId, kind: &str, name: &str) -> Uuid {
    if let Ok(id) = Uuid::parse_str(name) {
        return id;
    }
    let digest = Sha256::new()
        .chain_update(partition.as_str().as_bytes())
        .chain_update([0])
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(name.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_partition_an_org_and_the_default_engine_is_the_org() {
        let org = OrgId::new("acme");
        let default = EngineId::default_engine();
        let agent = EngineId::parse("agent-1", "engine").unwrap();
        assert_eq!(org.partition(&default), org);
        assert_ne!(org.partition(&agent), org);
        assert_ne!(org.partition(&agent), OrgId::new("other").partition(&agent));
        assert!(check_org_id(org.partition(&agent).as_str(), 256).is_err(), "a partition is no org id");
    }

    #[test]
    fn engine_ids_are_bounded_names() {
        for bad in ["", "a b", "a/b", "é", &"x".repeat(64), "a:b"] {
            assert!(EngineId::parse(bad, "engine").is_err(), "{bad:?}");
        }
        for good in ["default", "123456", "my_agent-2", &"x".repeat(63)] {
            assert!(EngineId::parse(good, "engine").is_ok(), "{good:?}");
        }
    }

    #[test]
    fn names_map_to_stable_ids_per_partition_and_kind() {
        let (a, b) = (OrgId::new("a"), OrgId::new("b"));
        assert_eq!(id_for_name(&a, "session", "s1"), id_for_name(&a, "session", "s1"));
        assert_ne!(id_for_name(&a, "session", "s1"), id_for_name(&b, "session", "s1"));
        assert_ne!(id_for_name(&a, "session", "s1"), id_for_name(&a, "memory", "s1"));
        let uuid = Uuid::now_v7();
        assert_eq!(id_for_name(&a, "session", &uuid.to_string()), uuid);
    }
}
