/** An HTTP method the API uses. */
export type HttpMethod = "GET" | "POST" | "PATCH" | "DELETE";

/** One operation of the server's OpenAPI document, and the client methods that call it. */
export interface Operation {
  /** The `operationId` in `/openapi.json`. */
  readonly operationId: string;
  readonly method: HttpMethod;
  /** The path template, as in `/openapi.json`. */
  readonly path: string;
  /** The client methods that send it (`group.method`, or `method` at the top level); the first is the plain call. */
  readonly sdk: readonly string[];
  /** Whether `X-Engine-Id` applies (the sessions, memories and jobs routes). */
  readonly engine: boolean;
  /** Whether sending it twice does no more than sending it once: network errors are then retried too. */
  readonly idempotent: boolean;
  /** Whether the server answers without credentials. */
  readonly public: boolean;
}

/**
 * Every operation of the native API (`/api/v1`) and the service endpoints, with the client
 * methods that call it. The client sends each request from this table (method, path,
 * whether the engine header applies, whether retrying after a network error is safe), and the
 * test suite checks it against the server's `/openapi.json` both ways.
 *
 * The Agent Engine surface (`/v1beta1/...`) is Google's protocol for Google's clients and is
 * not part of this client.
 */
export const OPERATIONS = [
  // Sessions
  { operationId: "create_session", method: "POST", path: "/api/v1/sessions", sdk: ["sessions.create"], engine: true, idempotent: false, public: false },
  { operationId: "list_sessions", method: "GET", path: "/api/v1/sessions", sdk: ["sessions.list", "sessions.iter"], engine: true, idempotent: true, public: false },
  { operationId: "get_session", method: "GET", path: "/api/v1/sessions/{id}", sdk: ["sessions.get"], engine: true, idempotent: true, public: false },
  { operationId: "delete_session", method: "DELETE", path: "/api/v1/sessions/{id}", sdk: ["sessions.delete"], engine: true, idempotent: true, public: false },
  { operationId: "append_events", method: "POST", path: "/api/v1/sessions/{id}/events", sdk: ["sessions.append", "sessions.appendMany"], engine: true, idempotent: false, public: false },
  { operationId: "list_events", method: "GET", path: "/api/v1/sessions/{id}/events", sdk: ["sessions.events", "sessions.iterEvents"], engine: true, idempotent: true, public: false },
  { operationId: "patch_state", method: "PATCH", path: "/api/v1/sessions/{id}/state", sdk: ["sessions.patchState"], engine: true, idempotent: true, public: false },
  { operationId: "get_state", method: "GET", path: "/api/v1/sessions/{id}/state", sdk: ["sessions.state"], engine: true, idempotent: true, public: false },
  { operationId: "fork_session", method: "POST", path: "/api/v1/sessions/{id}/fork", sdk: ["sessions.fork"], engine: true, idempotent: false, public: false },
  { operationId: "rewind_session", method: "POST", path: "/api/v1/sessions/{id}/rewind", sdk: ["sessions.rewind"], engine: true, idempotent: false, public: false },
  { operationId: "compact_session", method: "POST", path: "/api/v1/sessions/{id}/compact", sdk: ["sessions.compact"], engine: true, idempotent: false, public: false },
  { operationId: "assemble_context", method: "POST", path: "/api/v1/sessions/{id}/context", sdk: ["sessions.context"], engine: true, idempotent: true, public: false },
  { operationId: "stream_events", method: "GET", path: "/api/v1/sessions/{id}/events/stream", sdk: ["sessions.streamEvents"], engine: true, idempotent: true, public: false },
  // Memories
  { operationId: "create_memory", method: "POST", path: "/api/v1/memories", sdk: ["memories.create"], engine: true, idempotent: false, public: false },
  { operationId: "list_memories", method: "GET", path: "/api/v1/memories", sdk: ["memories.list", "memories.iter"], engine: true, idempotent: true, public: false },
  { operationId: "get_memory", method: "GET", path: "/api/v1/memories/{id}", sdk: ["memories.get"], engine: true, idempotent: true, public: false },
  { operationId: "update_memory", method: "PATCH", path: "/api/v1/memories/{id}", sdk: ["memories.update"], engine: true, idempotent: true, public: false },
  { operationId: "delete_memory", method: "DELETE", path: "/api/v1/memories/{id}", sdk: ["memories.delete"], engine: true, idempotent: true, public: false },
  { operationId: "list_revisions", method: "GET", path: "/api/v1/memories/{id}/revisions", sdk: ["memories.revisions"], engine: true, idempotent: true, public: false },
  { operationId: "restore_memory", method: "POST", path: "/api/v1/memories/{id}/restore", sdk: ["memories.restore"], engine: true, idempotent: false, public: false },
  { operationId: "get_profile", method: "GET", path: "/api/v1/memories/profile", sdk: ["memories.profile"], engine: true, idempotent: true, public: false },
  { operationId: "search_memories", method: "POST", path: "/api/v1/memories/search", sdk: ["memories.search"], engine: true, idempotent: true, public: false },
  { operationId: "generate_memories", method: "POST", path: "/api/v1/memories/generate", sdk: ["memories.generate"], engine: true, idempotent: false, public: false },
  // Jobs
  { operationId: "get_job", method: "GET", path: "/api/v1/jobs/{id}", sdk: ["jobs.get", "jobs.wait"], engine: true, idempotent: true, public: false },
  { operationId: "stream_job", method: "GET", path: "/api/v1/jobs/{id}/stream", sdk: ["jobs.stream"], engine: true, idempotent: true, public: false },
  // Keys (they belong to the org: no engine)
  { operationId: "create_key", method: "POST", path: "/api/v1/keys", sdk: ["keys.create"], engine: false, idempotent: false, public: false },
  { operationId: "list_keys", method: "GET", path: "/api/v1/keys", sdk: ["keys.list"], engine: false, idempotent: true, public: false },
  { operationId: "get_key", method: "GET", path: "/api/v1/keys/{id}", sdk: ["keys.get"], engine: false, idempotent: true, public: false },
  { operationId: "revoke_key", method: "DELETE", path: "/api/v1/keys/{id}", sdk: ["keys.revoke"], engine: false, idempotent: true, public: false },
  // Service endpoints
  { operationId: "health", method: "GET", path: "/health", sdk: ["health"], engine: false, idempotent: true, public: true },
  { operationId: "ready", method: "GET", path: "/health/ready", sdk: ["ready"], engine: false, idempotent: true, public: true },
  { operationId: "metrics", method: "GET", path: "/metrics", sdk: ["metrics"], engine: false, idempotent: true, public: true },
] as const satisfies readonly Operation[];

/** The `operationId` of an operation the client covers. */
export type OperationId = (typeof OPERATIONS)[number]["operationId"];

const BY_ID: ReadonlyMap<string, Operation> = new Map(OPERATIONS.map((op) => [op.operationId, op]));

/** The operation of an `operationId`. */
export function operation(id: OperationId): Operation {
  const found = BY_ID.get(id);
  if (!found) throw new Error(`unknown operation ${id}`);
  return found;
}
