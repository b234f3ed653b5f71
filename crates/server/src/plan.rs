//! What each role serves, runs and builds, declared once: [`Role::plan`]. Startup, the router
//! and the background tasks read the plan; nothing else asks which role this is.

use crate::config::Role;

/// One role's routes, components and background tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub routes: Routes,
    /// Loads the embedding model, builds the memory and generation services and readies the
    /// vector index. Without them a process needs no model directory.
    pub memory_services: bool,
    /// Applies rate limits to the requests it serves (the gateway leaves them to the services
    /// behind it, so each request is counted once).
    pub rate_limits: bool,
    pub tasks: &'static [Task],
}

/// The part of the HTTP API a role serves; health, metrics and the documentation are on every
/// role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// `/api/v1/sessions*` and `/api/v1/keys*` when `sessions`, `/api/v1/memories*` and
    /// `/api/v1/jobs*` when `memories`.
    Api { sessions: bool, memories: bool },
    /// Forwards `/api/v1/*` to the sessions and memory roles, aggregates `/health`.
    Gateway,
    /// Health and metrics only.
    None,
}

/// A background task of a role; each runs only when what it needs is configured (a broker for
/// the job relay, an external vector index for the vector relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Runs generation jobs (`WORKER_CONCURRENCY` of them).
    Workers,
    /// Announces runnable jobs on the broker.
    JobRelay,
    /// Brings the external vector index up to date with the store's outbox.
    VectorRelay,
    PurgeSessions,
    PurgeMemories,
    PurgeJobs,
}

impl Role {
    pub const fn plan(self) -> Plan {
        match self {
            Role::All => Plan {
                routes: Routes::Api { sessions: true, memories: true },
                memory_services: true,
                rate_limits: true,
                tasks: &[
                    Task::Workers,
                    Task::JobRelay,
                    Task::VectorRelay,
                    Task::PurgeSessions,
                    Task::PurgeMemories,
                    Task::PurgeJobs,
                ],
            },
            Role::Gateway => Plan { routes: Routes::Gateway, memory_services: false, rate_limits: false, tasks: &[] },
            Role::Sessions => Plan {
                routes: Routes::Api { sessions: true, memories: false },
                memory_services: false,
                rate_limits: true,
                tasks: &[Task::PurgeSessions],
            },
            // Announces the jobs it queues; writes memories, so it keeps the index in step.
            Role::Memory => Plan {
                routes: Routes::Api { sessions: false, memories: true },
                memory_services: true,
                rate_limits: true,
                tasks: &[Task::JobRelay, Task::VectorRelay, Task::PurgeMemories, Task::PurgeJobs],
            },
            // Announces retries and the jobs of dead workers.
            Role::Worker => Plan {
                routes: Routes::None,
                memory_services: true,
                rate_limits: true,
                tasks: &[Task::Workers, Task::JobRelay, Task::VectorRelay],
            },
        }
    }
}

impl Plan {
    pub fn runs(&self, task: Task) -> bool {
        self.tasks.contains(&task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_that_needs_the_memory_services_has_them() {
        for role in [Role::All, Role::Gateway, Role::Sessions, Role::Memory, Role::Worker] {
            let plan = role.plan();
            let needs_memory = plan.tasks.iter().any(|task| *task != Task::PurgeSessions)
                || matches!(plan.routes, Routes::Api { memories: true, .. });
            assert!(!needs_memory || plan.memory_services, "{role:?}");
        }
    }
}
