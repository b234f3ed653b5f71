import { ContextIQError } from "./errors.js";
import { sleep, Transport, type FetchLike, type RequestOptions } from "./http.js";
import type {
  AppendEventRequest,
  CompactRequest,
  ContextBody,
  ContextRequest,
  CreatedKeyBody,
  CreatedSession,
  CreateKeyRequest,
  CreateMemoryRequest,
  CreateSessionRequest,
  DeleteMemoryParams,
  EventBatch,
  EventBody,
  EventList,
  ForkSessionRequest,
  GenerateRequest,
  GetSessionParams,
  GetStateParams,
  HealthBody,
  JobBody,
  KeyBody,
  KeyList,
  ListEventsParams,
  ListMemoriesParams,
  ListSessionsParams,
  MemoryAnswer,
  MemoryBody,
  MemoryList,
  ProfileBody,
  RestoreRequest,
  RevisionList,
  RewindSessionRequest,
  Scope,
  SearchRequest,
  SearchResponse,
  SessionAnswer,
  SessionBody,
  SessionList,
  StateAt,
  StatePatch,
  StreamEventsParams,
  UpdateMemoryRequest,
} from "./types.js";

/** The options of a client. */
export interface ClientOptions {
  /** The server's base URL (default `http://127.0.0.1:8000`). */
  baseUrl?: string;
  /** An API key (`ck_...`), sent as `X-API-Key`. Give this or `token`, not both. */
  apiKey?: string;
  /** A JWT, sent as `Authorization: Bearer`. */
  token?: string;
  /**
   * The reasoning engine (`X-Engine-Id`) of the sessions, memories and jobs calls: a partition
   * of the org, 1 to 63 characters of `A-Z a-z 0-9 _ -`. Absent: the `default` engine.
   */
  engine?: string;
  /** Milliseconds one attempt may take (default 60000; 0: no limit). */
  timeoutMs?: number;
  /** Retries after a 429, a 503, or (idempotent calls) a network error (default 3; 0 disables). */
  maxRetries?: number;
  /** The first backoff when the server sends no `Retry-After`, doubled per retry (default 500 ms). */
  retryBaseDelayMs?: number;
  /** The longest wait before a retry (default 30000 ms); a longer `Retry-After` is not waited out but thrown. */
  maxRetryDelayMs?: number;
  /** The `fetch` to call (default: the global one). */
  fetch?: FetchLike;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
}

/** Options of `jobs.wait`. */
export interface WaitOptions extends RequestOptions {
  /** The first wait between two polls (default 500 ms); it grows by half each poll. */
  pollIntervalMs?: number;
  /** The longest wait between two polls (default 5000 ms). */
  maxPollIntervalMs?: number;
  /** How long to wait in all before throwing `wait_timeout` (default 300000 ms; 0: forever). */
  maxWaitMs?: number;
}

/** A page of a cursor-paginated list. */
interface Page<T> {
  items: T[];
  next: string | null | undefined;
}

/** Yields every item of every page, following `next_cursor` until the last page. */
async function* paginate<T>(first: string | undefined, load: (cursor: string | undefined) => Promise<Page<T>>): AsyncGenerator<T, void, undefined> {
  let cursor = first;
  const seen = new Set<string>();
  for (;;) {
    const page = await load(cursor);
    yield* page.items;
    if (page.next === null || page.next === undefined || page.next === "") return;
    // A cursor handed out twice would loop forever: the list ends there.
    if (seen.has(page.next)) return;
    seen.add(page.next);
    cursor = page.next;
  }
}

/** Conversations: events in one total order, and a state dict. */
export class Sessions {
  constructor(private readonly http: Transport) {}

  /**
   * Creates a session (`POST /api/v1/sessions`); with `parent_session_id`, under a parent
   * session (whose scope its own must hold), deleted with it.
   */
  create(body: CreateSessionRequest, options?: RequestOptions): Promise<CreatedSession> {
    return this.http.call({ op: "create_session", body, options });
  }

  /** Reads a session with its first events (`GET /api/v1/sessions/{id}`); `{include_events: false}` omits them. */
  get(id: string, params?: GetSessionParams, options?: RequestOptions): Promise<SessionBody> {
    return this.http.call({ op: "get_session", path: { id }, query: { include_events: params?.include_events }, options });
  }

  /** One page of sessions, newest first (`GET /api/v1/sessions`); `{parent_session_id}`: a session's children. */
  list(params?: ListSessionsParams, options?: RequestOptions): Promise<SessionList> {
    return this.http.call({ op: "list_sessions", query: { ...params }, options });
  }

  /** Every session matching `params`, page after page (`limit` is the page size). */
  iter(params?: ListSessionsParams, options?: RequestOptions): AsyncGenerator<SessionBody, void, undefined> {
    return paginate(params?.cursor, async (cursor) => {
      const page = await this.list({ ...params, cursor }, options);
      return { items: page.sessions, next: page.next_cursor };
    });
  }

  /** Deletes a session, its events and its descendants (children, their children, ...) (`DELETE /api/v1/sessions/{id}`). */
  async delete(id: string, options?: RequestOptions): Promise<void> {
    await this.http.call({ op: "delete_session", path: { id }, options });
  }

  /** Appends one event (`POST /api/v1/sessions/{id}/events`). */
  append(id: string, event: AppendEventRequest, options?: RequestOptions): Promise<EventBody> {
    return this.http.call({ op: "append_events", path: { id }, body: event, options });
  }

  /** Appends several events atomically, in order (`POST /api/v1/sessions/{id}/events` with `{events}`). */
  appendMany(id: string, events: AppendEventRequest[], options?: RequestOptions): Promise<EventBatch> {
    return this.http.call({ op: "append_events", path: { id }, body: { events }, options });
  }

  /** One page of a session's events, in order (`GET /api/v1/sessions/{id}/events`). */
  events(id: string, params?: ListEventsParams, options?: RequestOptions): Promise<EventList> {
    return this.http.call({ op: "list_events", path: { id }, query: { ...params }, options });
  }

  /** Every event of a session, in order, page after page (`limit` is the page size). */
  iterEvents(id: string, params?: ListEventsParams, options?: RequestOptions): AsyncGenerator<EventBody, void, undefined> {
    return paginate(params?.cursor, async (cursor) => {
      const page = await this.events(id, { ...params, cursor }, options);
      return { items: page.events, next: page.next_cursor };
    });
  }

  /**
   * Applies a JSON Merge Patch (RFC 7396) to the state (`PATCH /api/v1/sessions/{id}/state`):
   * `null` deletes a key, objects merge. A credential without SESSION_READ gets a receipt.
   */
  patchState(id: string, patch: StatePatch, options?: RequestOptions): Promise<SessionAnswer> {
    return this.http.call({ op: "patch_state", path: { id }, body: patch, contentType: "application/merge-patch+json", options });
  }

  /**
   * The session's state now, or as it was after event `at_seq` and the state patches before the
   * next event (`GET /api/v1/sessions/{id}/state`), rebuilt from the state each event set and
   * each patch. `at_seq` goes from 0 (as the session was created) to the newest event.
   */
  state(id: string, params?: GetStateParams, options?: RequestOptions): Promise<StateAt> {
    return this.http.call({ op: "get_state", path: { id }, query: { at_seq: params?.at_seq }, options });
  }

  /**
   * A new session with this one's history up to a point and the state as it was there
   * (`POST /api/v1/sessions/{id}/fork`): after event `at_seq`, after the last event of
   * `invocation_id`, or (neither) after the newest. The fork has the source's user, agent,
   * scope, parent and compaction policy, copies of its events (with ids of their own) and
   * `forked_from: {session_id, seq}`; the source is unchanged. `session_id` names the fork (a
   * taken id is a 409 `session_exists`). Resolves with the fork without its events, or a
   * receipt for a credential without SESSION_READ.
   */
  fork(id: string, body: ForkSessionRequest = {}, options?: RequestOptions): Promise<SessionAnswer> {
    return this.http.call({ op: "fork_session", path: { id }, body, options });
  }

  /**
   * Takes the session back to how it was after event `to_seq`, or before the first event of
   * `before_invocation_id` (ADK's rewind) (`POST /api/v1/sessions/{id}/rewind`): appends a
   * `rewind` event that restores the state of that point and takes the events between out of
   * the conversation (`context` and compaction skip them). Nothing is deleted: the events stay
   * listed, and a later rewind can go back to any of them. Resolves with the session after the
   * rewind (without its events), or a receipt for a credential without SESSION_READ.
   */
  rewind(id: string, target: RewindSessionRequest, options?: RequestOptions): Promise<SessionAnswer> {
    return this.http.call({ op: "rewind_session", path: { id }, body: target, options });
  }

  /**
   * Queues a compaction (`POST /api/v1/sessions/{id}/compact`): a job that summarises the events
   * after the last compaction, all but the `keep_recent_events` newest, into one compaction
   * event (no event is deleted or changed). `jobs.wait` or `jobs.stream` follow it; the job's
   * `compaction_event_id` is the summary's event (null: there was nothing to summarise).
   */
  compact(id: string, body: CompactRequest = {}, options?: RequestOptions): Promise<JobBody> {
    return this.http.call({ op: "compact_session", path: { id }, body, options });
  }

  /**
   * What to put in front of the model for the session's next turn, within `budget_tokens`
   * (`POST /api/v1/sessions/{id}/context`): the state, compaction summaries, relevant memories
   * and the recent events verbatim, as parts with their token counts and as one `text`.
   */
  context(id: string, body: ContextRequest, options?: RequestOptions): Promise<ContextBody> {
    return this.http.call({ op: "assemble_context", path: { id }, body, options });
  }

  /**
   * The session's events as they are appended, by any client (`GET /api/v1/sessions/{id}/events/stream`,
   * Server-Sent Events): with `after_seq`, the stored events after it first. An async iterator
   * that ends when the session is deleted or expires, or the server stops (resume with
   * `last_event_id`: the `seq` of the last event received); `break` or an aborted `signal`
   * ends it too and closes the connection. A broken connection throws a `network_error`.
   */
  async *streamEvents(id: string, params: StreamEventsParams = {}, options?: RequestOptions): AsyncGenerator<EventBody, void, undefined> {
    const stream = this.http.events({
      op: "stream_events",
      path: { id },
      query: { after_seq: params.after_seq },
      lastEventId: params.last_event_id,
      signal: params.signal,
      options,
    });
    for await (const [name, data] of stream) {
      if (name === "event") yield data as EventBody;
      // The session is gone (`{"reason": "session_not_found"}`): nothing more will come.
      else if (name === "end") return;
    }
  }
}

/** Durable facts of a scope: CRUD, revisions, hybrid search, generation. */
export class Memories {
  constructor(private readonly http: Transport) {}

  /**
   * Remembers a fact (`POST /api/v1/memories`). With `consolidate: true` the fact goes through
   * consolidation as a job, and the answer is that job.
   */
  create(body: CreateMemoryRequest & { consolidate: true }, options?: RequestOptions): Promise<JobBody>;
  create(body: CreateMemoryRequest & { consolidate?: false }, options?: RequestOptions): Promise<MemoryBody>;
  create(body: CreateMemoryRequest, options?: RequestOptions): Promise<MemoryBody | JobBody>;
  create(body: CreateMemoryRequest, options?: RequestOptions): Promise<MemoryBody | JobBody> {
    return this.http.call({ op: "create_memory", body, options });
  }

  /** Reads a memory (`GET /api/v1/memories/{id}`). */
  get(id: string, options?: RequestOptions): Promise<MemoryBody> {
    return this.http.call({ op: "get_memory", path: { id }, options });
  }

  /** One page of a scope's memories, newest first (`GET /api/v1/memories`). */
  list(params: ListMemoriesParams, options?: RequestOptions): Promise<MemoryList> {
    const { scope, ...rest } = params;
    return this.http.call({ op: "list_memories", query: { scope: JSON.stringify(scope), ...rest }, options });
  }

  /** Every memory of a scope matching `params`, page after page (`limit` is the page size). */
  iter(params: ListMemoriesParams, options?: RequestOptions): AsyncGenerator<MemoryBody, void, undefined> {
    return paginate(params.cursor, async (cursor) => {
      const page = await this.list({ ...params, cursor }, options);
      return { items: page.memories, next: page.next_cursor };
    });
  }

  /**
   * Changes the fields given (`PATCH /api/v1/memories/{id}`); a patch that changes nothing
   * writes no revision. A credential without MEMORY_READ gets a receipt.
   */
  update(id: string, patch: UpdateMemoryRequest, options?: RequestOptions): Promise<MemoryAnswer> {
    return this.http.call({ op: "update_memory", path: { id }, body: patch, options });
  }

  /**
   * Deletes a memory (`DELETE /api/v1/memories/{id}`): its history stays and `restore` brings
   * it back; `{purge: true}` erases the memory and every revision for good.
   */
  async delete(id: string, params?: DeleteMemoryParams, options?: RequestOptions): Promise<void> {
    await this.http.call({ op: "delete_memory", path: { id }, query: { purge: params?.purge }, options });
  }

  /** A memory's revisions, oldest first (`GET /api/v1/memories/{id}/revisions`). */
  revisions(id: string, options?: RequestOptions): Promise<RevisionList> {
    return this.http.call({ op: "list_revisions", path: { id }, options });
  }

  /**
   * Returns a memory, live or deleted, to the state a revision recorded
   * (`POST /api/v1/memories/{id}/restore`); itself a revision.
   */
  restore(id: string, revision: string | RestoreRequest, options?: RequestOptions): Promise<MemoryAnswer> {
    const body: RestoreRequest = typeof revision === "string" ? { revision_id: revision } : revision;
    return this.http.call({ op: "restore_memory", path: { id }, body, options });
  }

  /** Hybrid search (BM25 and embeddings, fused) within exactly one scope (`POST /api/v1/memories/search`). */
  search(body: SearchRequest, options?: RequestOptions): Promise<SearchResponse> {
    return this.http.call({ op: "search_memories", body, options });
  }

  /**
   * The current value of each attribute a scope's memories set (name, age, residence, job,
   * favourites, ...), each with the memory it comes from (`GET /api/v1/memories/profile`).
   */
  profile(scope: Scope, options?: RequestOptions): Promise<ProfileBody> {
    return this.http.call({ op: "get_profile", query: { scope: JSON.stringify(scope) }, options });
  }

  /**
   * Queues a job that turns a conversation (a session, inline events) or finished facts into
   * memories (`POST /api/v1/memories/generate`); `jobs.wait` waits for its outcome.
   */
  generate(body: GenerateRequest, options?: RequestOptions): Promise<JobBody> {
    return this.http.call({ op: "generate_memories", body, options });
  }
}

/** Generation jobs. */
export class Jobs {
  constructor(private readonly http: Transport) {}

  /** Reads a job (`GET /api/v1/jobs/{id}`). */
  get(id: string, options?: RequestOptions): Promise<JobBody> {
    return this.http.call({ op: "get_job", path: { id }, options });
  }

  /**
   * The job each time it changes (`GET /api/v1/jobs/{id}/stream`, Server-Sent Events): an async
   * iterator whose last job is `completed` or `failed` (a finished job: that one only). `break`
   * or an aborted `signal` ends it and closes the connection.
   */
  async *stream(id: string, options?: RequestOptions): AsyncGenerator<JobBody, void, undefined> {
    for await (const [name, data] of this.http.events({ op: "stream_job", path: { id }, options })) {
      if (name !== "job") continue;
      const job = data as JobBody;
      yield job;
      if (job.status === "completed" || job.status === "failed") return;
    }
  }

  /**
   * Polls a job until it is `completed` or `failed` and resolves with it (check `status`);
   * throws a `ContextIQError` with the code `wait_timeout` after `maxWaitMs`.
   */
  async wait(id: string, options: WaitOptions = {}): Promise<JobBody> {
    const { pollIntervalMs = 500, maxPollIntervalMs = 5000, maxWaitMs = 300_000, ...request } = options;
    const deadline = maxWaitMs > 0 ? Date.now() + maxWaitMs : Infinity;
    let interval = pollIntervalMs;
    for (;;) {
      const job = await this.get(id, request);
      if (job.status === "completed" || job.status === "failed") return job;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ContextIQError({
          status: 0,
          code: "wait_timeout",
          title: "Job still running",
          detail: `job ${id} is still ${job.status} after ${maxWaitMs} ms`,
        });
      }
      await sleep(Math.min(interval, left), request.signal);
      interval = Math.min(maxPollIntervalMs, interval * 1.5);
    }
  }
}

/** API keys of the caller's org (ADMIN). Keys belong to the org: the engine does not apply. */
export class Keys {
  constructor(private readonly http: Transport) {}

  /**
   * Creates a key (`POST /api/v1/keys`); its text (`key`) is shown this once. A key never holds
   * more than its creator (permissions, scope, expiry, rate), and is revoked with it.
   */
  create(body: CreateKeyRequest, options?: RequestOptions): Promise<CreatedKeyBody> {
    return this.http.call({ op: "create_key", body, options });
  }

  /** The org's keys, without their text (`GET /api/v1/keys`). */
  list(options?: RequestOptions): Promise<KeyList> {
    return this.http.call({ op: "list_keys", options });
  }

  /** Reads a key (`GET /api/v1/keys/{id}`). */
  get(id: string, options?: RequestOptions): Promise<KeyBody> {
    return this.http.call({ op: "get_key", path: { id }, options });
  }

  /** Revokes a key and every key minted under it (`DELETE /api/v1/keys/{id}`); resolves with its record. */
  revoke(id: string, options?: RequestOptions): Promise<KeyBody> {
    return this.http.call({ op: "revoke_key", path: { id }, options });
  }
}

/**
 * The ContextIQ client.
 *
 * ```ts
 * const ciq = new ContextIQ({ baseUrl: "http://127.0.0.1:8000", apiKey: process.env.CONTEXTIQ_API_KEY });
 * const session = await ciq.sessions.create({ user_id: "u1" });
 * ```
 */
export class ContextIQ {
  readonly sessions: Sessions;
  readonly memories: Memories;
  readonly jobs: Jobs;
  readonly keys: Keys;
  /** The engine of this client's sessions, memories and jobs calls (undefined: `default`). */
  readonly engine: string | undefined;
  private readonly http: Transport;
  private readonly options: ClientOptions;

  constructor(options: ClientOptions = {}) {
    if (options.apiKey !== undefined && options.token !== undefined) {
      throw new TypeError("ContextIQ: give apiKey or token, not both (the server refuses two credentials)");
    }
    const nonNegative = (name: string, value: number | undefined, fallback: number): number => {
      if (value === undefined) return fallback;
      if (typeof value !== "number" || Number.isNaN(value) || value < 0) {
        throw new TypeError(`ContextIQ: ${name} must be a number >= 0`);
      }
      return value;
    };
    this.options = { ...options };
    this.engine = options.engine;
    this.http = new Transport({
      baseUrl: (options.baseUrl ?? "http://127.0.0.1:8000").replace(/\/+$/, ""),
      apiKey: options.apiKey,
      token: options.token,
      engine: options.engine,
      timeoutMs: nonNegative("timeoutMs", options.timeoutMs, 60_000),
      maxRetries: Math.floor(nonNegative("maxRetries", options.maxRetries, 3)),
      retryBaseDelayMs: nonNegative("retryBaseDelayMs", options.retryBaseDelayMs, 500),
      maxRetryDelayMs: nonNegative("maxRetryDelayMs", options.maxRetryDelayMs, 30_000),
      headers: { ...options.headers },
      fetch: options.fetch,
    });
    this.sessions = new Sessions(this.http);
    this.memories = new Memories(this.http);
    this.jobs = new Jobs(this.http);
    this.keys = new Keys(this.http);
  }

  /** A client like this one on another reasoning engine (`null`: the `default` engine). */
  withEngine(engine: string | null): ContextIQ {
    const { engine: _previous, ...rest } = this.options;
    return new ContextIQ(engine === null ? rest : { ...rest, engine });
  }

  /** The process is up (`GET /health`). */
  health(options?: RequestOptions): Promise<HealthBody> {
    return this.http.call({ op: "health", options });
  }

  /** The store answers: ready to serve (`GET /health/ready`); a 503 when it is not. */
  ready(options?: RequestOptions): Promise<HealthBody> {
    return this.http.call({ op: "ready", options });
  }

  /** Every metric of the process, in Prometheus's text format (`GET /metrics`). */
  metrics(options?: RequestOptions): Promise<string> {
    return this.http.call({ op: "metrics", accept: "text", options });
  }
}
