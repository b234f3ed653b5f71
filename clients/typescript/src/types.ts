/**
 * The request and response bodies of ContextIQ's native API (`/api/v1`) and its service
 * endpoints, as `/openapi.json` describes them (the component named in each comment).
 *
 * Field names are the wire names (snake_case), so a body reads the same here, in the server's
 * documentation and in a curl example. Timestamps in answers are RFC 3339 strings; in
 * requests a `Date` is accepted too (it is sent as its ISO string).
 */

/** A JSON object of any shape (state, metadata, ...). */
export type JsonObject = Record<string, unknown>;

/** A date-time in a request: an RFC 3339 string, or a `Date`. */
export type DateTimeInput = string | Date;

/** A scope: a flat string-to-string dict, 1 to 32 keys (`BTreeMap`). */
export type Scope = Record<string, string>;

// ---------------------------------------------------------------------------------------------
// Errors and service endpoints
// ---------------------------------------------------------------------------------------------

/** An RFC 9457 problem, the body of every error (`Problem`). */
export interface Problem {
  /** `urn:contextiq:problem:<code>`. */
  type: string;
  title: string;
  status: number;
  detail: string;
  /** Stable, snake_case: one per kind of problem. */
  code: string;
  /** The JSON path (body) or name (query, header) of the offending field. */
  field?: string | null;
}

/** The answer of `GET /health` and `GET /health/ready` (`HealthBody`). */
export interface HealthBody {
  status: string;
  service: string;
  version: string;
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/** An event's role (`RoleBody`). */
export type Role = "user" | "assistant" | "tool" | "system";

/** An event's content: text or any JSON value but `null`. */
export type EventContent = string | number | boolean | JsonObject | unknown[];

/** The body of `POST /api/v1/sessions` (`CreateSessionRequest`). */
export interface CreateSessionRequest {
  user_id: string;
  agent_id?: string | null;
  /** Defaults to `{user_id}`; when it has a `user_id`, it must equal `user_id`. */
  scope?: Scope | null;
  state?: JsonObject | null;
  metadata?: JsonObject | null;
  /** Seconds until the session expires (up to ten years); or give `expires_at`. */
  ttl_seconds?: number | null;
  /** In the future, at most ten years ahead; not with `ttl_seconds`. */
  expires_at?: DateTimeInput | null;
  /** When the session is compacted without being asked; default: the server's policy (`COMPACTION_*`). */
  compaction_policy?: CompactionPolicy | null;
  /**
   * The session this one belongs to (a sub-agent's session under its coordinator's): within
   * reach, and this session's scope must hold all of the parent's. Deleting the parent deletes
   * this session too.
   */
  parent_session_id?: string | null;
}

/**
 * When a session compacts itself (`CompactionPolicyBody`): every `every_events` new events, or
 * once the events not yet summarised hold `token_threshold` tokens; each time all but the
 * `keep_recent_events` newest are summarised.
 */
export interface CompactionPolicy {
  /** At least 1. */
  every_events?: number | null;
  /** At least 1. */
  token_threshold?: number | null;
  /** 0 to 10,000. */
  keep_recent_events?: number | null;
}

/** An event's actions (`ActionsBody`, ADK's); only `state_delta` is taken from clients. */
export interface EventActions {
  /**
   * Keys set in the session's state with the append, atomically with it, each replacing the
   * key's value whole (`null` included: unlike `patchState`, it does not delete the key).
   */
  state_delta: JsonObject;
}

/** What a compaction event summarises (`CompactionBody`). */
export interface CompactionBody {
  start_seq: number;
  end_seq: number;
  /** When the first event summarised happened. */
  start_time: string;
  /** When the last event summarised happened. */
  end_time: string;
  /** `llm` or `offline` (the offline summariser, when no LLM is configured). */
  method: string;
  /** Tokens of the message events summarised. */
  tokens_before: number;
  /** Tokens of the summary. */
  tokens_after: number;
}

/** How far a session's compactions reach (`CompactionStatusBody`). */
export interface CompactionStatus {
  /** The session's own policy; null: the server's. */
  policy?: CompactionPolicy | null;
  /** The last `seq` a compaction summarised (0: none yet). */
  through_seq: number;
  /** Message events after `through_seq`. */
  uncompacted_events: number;
  /** Their tokens. */
  uncompacted_tokens: number;
}

/**
 * What an event is: a `message`; a `compaction` (a summary the server wrote); or a `rewind`
 * (the session went back to how it was after `rewind.to_seq`).
 */
export type EventKind = "message" | "compaction" | "rewind";

/**
 * Where a rewind event went back to (`RewindBody`). The events after `to_seq` and before the
 * rewind event are out of the conversation (context assembly and compaction skip them), but
 * stay stored and listed; a later rewind can go back to any of them.
 */
export interface RewindDetail {
  /** The session is as it was after this event (0: as it was created). */
  to_seq: number;
  /** The invocation of event `to_seq + 1`, if it has one (ADK's `rewind_before_invocation_id`). */
  before_invocation_id?: string | null;
}

/** A stored event (`EventBody`). */
export interface EventBody {
  id: string;
  session_id: string;
  /** Position in the session, from 1: the total order of its events. */
  seq: number;
  author: string;
  role: Role;
  content: EventContent;
  invocation_id?: string | null;
  metadata: JsonObject;
  timestamp: string;
  /** Tokens of its content, counted on append with the server's tokenizer. */
  token_count: number;
  /**
   * `message`; `compaction`: a summary (the content) the server wrote of `compaction`'s range;
   * `rewind`: the session went back to how it was after `rewind.to_seq` (author
   * `system:rewind`, role `system`; `actions.state_delta` is the state change, `null` for a key
   * removed).
   */
  kind: EventKind;
  /** For a compaction event: what it summarises (absent on other kinds). */
  compaction?: CompactionBody | null;
  /** For a rewind event: where it went back to (absent on other kinds). */
  rewind?: RewindDetail | null;
  actions: EventActions;
}

/** Where a fork branched off (`ForkOriginBody`): its events up to `seq` are copies of that session's. */
export interface ForkOrigin {
  session_id: string;
  seq: number;
}

/** A session (`SessionBody`). */
export interface SessionBody {
  id: string;
  user_id: string;
  agent_id?: string | null;
  scope: Scope;
  state: JsonObject;
  metadata: JsonObject;
  created_at: string;
  updated_at: string;
  expires_at?: string | null;
  /** How many events the session holds. */
  event_count: number;
  /** The first events in append order (at most 1,000); absent in lists and with `include_events=false`. */
  events?: EventBody[] | null;
  /** When `events` holds only the first events: the `cursor` to page the rest with `sessions.events`. */
  events_next_cursor?: string | null;
  /** Tokens of all its events, each counted on append with the server's tokenizer. */
  token_count: number;
  compaction: CompactionStatus;
  /** The session it belongs to, if any (`CreateSessionRequest.parent_session_id`). */
  parent_session_id?: string | null;
  /** The session and event it was forked from, if it was (`sessions.fork`). */
  forked_from?: ForkOrigin | null;
}

/** The answer of `POST /api/v1/sessions` (`CreatedSession`): a session with its (empty) events. */
export interface CreatedSession extends SessionBody {
  events: EventBody[];
}

/** The answer of `GET /api/v1/sessions` (`SessionList`). */
export interface SessionList {
  sessions: SessionBody[];
  /** Pass as `cursor` for the next page; null on the last page. */
  next_cursor?: string | null;
}

/** The query of `GET /api/v1/sessions`. */
export interface ListSessionsParams {
  user_id?: string;
  agent_id?: string;
  /** Only the children of this session (those created with it as `parent_session_id`). */
  parent_session_id?: string;
  /** Page size, 1 to 100 (default 20). */
  limit?: number;
  /** The `next_cursor` of the previous page. */
  cursor?: string;
}

/** The query of `GET /api/v1/sessions/{id}`. */
export interface GetSessionParams {
  /** Include the events (default true). */
  include_events?: boolean;
}

/** One event to append (`AppendEventRequest`). */
export interface AppendEventRequest {
  author: string;
  content: EventContent;
  /** Defaults to `user`. */
  role?: Role | null;
  invocation_id?: string | null;
  metadata?: JsonObject | null;
  /** When the event happened (years 1 to 9999); defaults to the time it is stored. */
  timestamp?: DateTimeInput | null;
  /** `{ state_delta }`: keys set in the session's state, atomically with the append. */
  actions?: Partial<EventActions> | null;
}

/** The body of `POST /api/v1/sessions/{id}/compact` (`CompactRequest`). */
export interface CompactRequest {
  /** Newest message events left out of the summary, 0 to 10,000 (default: the session's policy's, else 0). */
  keep_recent_events?: number | null;
}

/** The body of `POST /api/v1/sessions/{id}/context` (`ContextRequestBody`). */
export interface ContextRequest {
  /** The most tokens the context may take under the server's tokenizer, 1 to 1,000,000. */
  budget_tokens: number;
  /** What memories should be relevant to, 1 to 4000 characters; default: the session's newest user turn. */
  query?: string | null;
  /** Most memories to include, 0 to 100, 0 for none (default 5). Memories need MEMORY_READ. */
  memory_top_k?: number | null;
  /** Include the session's state (default true). */
  include_state?: boolean | null;
}

/** The session's state in a context (`StatePartBody`). */
export interface ContextState {
  state: JsonObject;
  token_count: number;
}

/** A compaction summary in a context (`SummaryPartBody`). */
export interface ContextSummary {
  /** The compaction event. */
  event_id: string;
  seq: number;
  start_seq: number;
  end_seq: number;
  /** `llm` or `offline`. */
  method: string;
  summary: string;
  token_count: number;
}

/** A memory in a context (`MemoryPartBody`). */
export interface ContextMemory {
  id: string;
  fact: string;
  topic?: string | null;
  relevance: number;
  token_count: number;
}

/** An event shown verbatim in a context (`EventPartBody`). */
export interface ContextEvent {
  event: EventBody;
  token_count: number;
}

/** What of the session a context shows (`CoverageBody`). */
export interface ContextCoverage {
  /** The oldest event shown verbatim. */
  verbatim_from_seq?: number | null;
  /** `[start_seq, end_seq]` of each summary included. */
  summarised: [number, number][];
  /** Events before `verbatim_from_seq` that no included summary covers. */
  unrepresented_events: number;
}

/**
 * What to put in front of the model for a session's next turn (`ContextBody`), in priority
 * order: the newest event, the state, the newest compaction summary, the most relevant
 * memories (at most a quarter of the budget), the recent events back to that summary, then
 * older summaries. The same request on the same session and memories gives the same context.
 */
export interface ContextBody {
  session_id: string;
  /** The tokenizer every count is in (`SESSION_TOKENIZER`, e.g. `o200k_base`). */
  tokenizer: string;
  budget_tokens: number;
  /** Tokens of `text`; never more than `budget_tokens`. */
  total_tokens: number;
  /** The query memories were searched with. */
  query?: string | null;
  state?: ContextState | null;
  /** Compaction summaries included, oldest first. */
  summaries: ContextSummary[];
  /** Memories included, most relevant first. */
  memories: ContextMemory[];
  /** Events included verbatim, oldest first: one unbroken stretch ending at the newest. */
  events: ContextEvent[];
  coverage: ContextCoverage;
  /** Everything above as one block of text, in reading order. */
  text: string;
}

/** Where a stream of a session's events starts (`GET /api/v1/sessions/{id}/events/stream`). */
export interface StreamEventsParams {
  /** Send the stored events after this `seq` first (0: from the first); default: only events appended from now on. */
  after_seq?: number;
  /** Resume after this `seq` (sent as `Last-Event-ID`, which wins over `after_seq`). */
  last_event_id?: number;
  /** Ends the stream (quietly) when it aborts; as `RequestOptions.signal`. */
  signal?: AbortSignal;
}

/** Several events appended atomically, in order (`AppendEventsRequest`). */
export interface AppendEventsRequest {
  /** 1 to `MAX_EVENTS_PER_REQUEST` (default 100) events. */
  events: AppendEventRequest[];
}

/** The body of `POST /api/v1/sessions/{id}/events` (`AppendBody`). */
export type AppendBody = AppendEventRequest | AppendEventsRequest;

/** The answer of a batch append (`EventBatch`). */
export interface EventBatch {
  events: EventBody[];
}

/** The answer of `POST /api/v1/sessions/{id}/events` (`Appended`). */
export type Appended = EventBody | EventBatch;

/** The answer of `GET /api/v1/sessions/{id}/events` (`EventList`). */
export interface EventList {
  events: EventBody[];
  /** Pass as `cursor` for the next page; null when no more events followed at read time. */
  next_cursor?: string | null;
}

/** The query of `GET /api/v1/sessions/{id}/events`. */
export interface ListEventsParams {
  /** Page size, 1 to 1000 (default 100). */
  limit?: number;
  /** The `next_cursor` of the previous page. */
  cursor?: string;
}

/** A JSON Merge Patch (RFC 7396) of a session's state: `null` deletes a key, objects merge. */
export type StatePatch = JsonObject;

/**
 * The answer of a change to a credential that may write but not read (`WriteReceipt`): that
 * the change happened, and nothing of the stored data the request did not carry.
 */
export interface WriteReceipt {
  id: string;
  updated_at: string;
}

/**
 * The answer of `PATCH /api/v1/sessions/{id}/state`, `POST /api/v1/sessions/{id}/fork` and
 * `POST /api/v1/sessions/{id}/rewind` (`SessionAnswer`): the session without its events, or a
 * receipt for a credential without SESSION_READ.
 */
export type SessionAnswer = SessionBody | WriteReceipt;

/** The query of `GET /api/v1/sessions/{id}/state`. */
export interface GetStateParams {
  /**
   * The state as it was after this event (and the state patches before the next one), 0 (as
   * the session was created) to the newest event; default: now.
   */
  at_seq?: number;
}

/** A session's state at one point of its history (`StateAt`). */
export interface StateAt {
  session_id: string;
  /** The event it is the state after (without `at_seq`: the newest, the event count). */
  at_seq: number;
  state: JsonObject;
}

/**
 * Where a fork ends: after event `at_seq` (0: before the first), or after the last event of
 * `invocation_id`, not both; neither: after the newest event.
 */
export type ForkPoint =
  | { at_seq?: number | null; invocation_id?: null }
  | { invocation_id: string; at_seq?: null };

/** The body of `POST /api/v1/sessions/{id}/fork` (`ForkSessionRequest`); every field is optional. */
export type ForkSessionRequest = ForkPoint & {
  /** The fork's id (a UUID); default: a new one. A taken id is a 409 `session_exists`. */
  session_id?: string | null;
  /** The fork's metadata; default: the source's. */
  metadata?: JsonObject | null;
  /** Seconds until the fork expires (up to ten years); or give `expires_at`; default: the server's TTL. */
  ttl_seconds?: number | null;
  /** In the future, at most ten years ahead; not with `ttl_seconds`. */
  expires_at?: DateTimeInput | null;
};

/**
 * The body of `POST /api/v1/sessions/{id}/rewind` (`RewindSessionRequest`), exactly one of:
 * `to_seq`, back to how the session was after that event (0: as it was created; an earlier
 * event than the newest); `before_invocation_id`, back to before the first event of that
 * invocation (ADK's rewind).
 */
export type RewindSessionRequest =
  | { to_seq: number; before_invocation_id?: null }
  | { before_invocation_id: string; to_seq?: null };

// ---------------------------------------------------------------------------------------------
// Memories
// ---------------------------------------------------------------------------------------------

/** A memory (`MemoryBody`). */
export interface MemoryBody {
  id: string;
  scope: Scope;
  fact: string;
  topic?: string | null;
  confidence: number;
  source_session_id?: string | null;
  source_event_ids: string[];
  metadata: JsonObject;
  /** When the fact was said: its conversation turn, the time a client gave, else `created_at`. */
  said_at: string;
  created_at: string;
  updated_at: string;
  expires_at?: string | null;
}

/** The body of `POST /api/v1/memories` (`CreateMemoryRequest`). */
export interface CreateMemoryRequest {
  scope: Scope;
  fact: string;
  topic?: string | null;
  /** From 0 to 1 (default 1). */
  confidence?: number | null;
  /** At most 64 KiB as JSON. */
  metadata?: JsonObject | null;
  source_session_id?: string | null;
  source_event_ids?: string[];
  /** Seconds until the memory expires (up to ten years); or give `expires_at`. */
  ttl_seconds?: number | null;
  /** In the future, at most ten years ahead; not with `ttl_seconds`. */
  expires_at?: DateTimeInput | null;
  /** When the fact was said, for facts of older conversations (not in the future; default: now; not with `consolidate`). */
  said_at?: DateTimeInput | null;
  /**
   * Run the fact through consolidation (duplicate detection, updates) as a job instead of
   * adding it as is: the answer is then the job (202). Takes `fact`, `topic`, `confidence`
   * and `ttl_seconds` only.
   */
  consolidate?: boolean;
}

/** The body of `PATCH /api/v1/memories/{id}` (`UpdateMemoryRequest`): absent fields stay; `null` clears `topic` and `expires_at`. */
export interface UpdateMemoryRequest {
  fact?: string | null;
  topic?: string | null;
  confidence?: number | null;
  /** Replaces the metadata. */
  metadata?: JsonObject | null;
  ttl_seconds?: number | null;
  expires_at?: DateTimeInput | null;
  /** When the fact was said; not in the future. */
  said_at?: DateTimeInput | null;
}

/** The answer of an update or a restore (`MemoryAnswer`). */
export type MemoryAnswer = MemoryBody | WriteReceipt;

/** The answer of `GET /api/v1/memories` (`MemoryList`). */
export interface MemoryList {
  memories: MemoryBody[];
  next_cursor?: string | null;
}

/** The query of `GET /api/v1/memories`. */
export interface ListMemoriesParams {
  /** The scope whose memories to list (sent as a JSON object). */
  scope: Scope;
  topic?: string;
  created_after?: DateTimeInput;
  created_before?: DateTimeInput;
  updated_after?: DateTimeInput;
  updated_before?: DateTimeInput;
  /** Memories said after this time (`said_at`). */
  said_after?: DateTimeInput;
  said_before?: DateTimeInput;
  /** 1 to 100 (default 20). */
  limit?: number;
  /** The `next_cursor` of the previous page. */
  cursor?: string;
}

/** The query of `DELETE /api/v1/memories/{id}`. */
export interface DeleteMemoryParams {
  /** Erase the memory and its whole history for good (default: delete, restorable). */
  purge?: boolean;
}

/** A revision of a memory (`RevisionBody`). */
export interface RevisionBody {
  id: string;
  memory_id: string;
  /** created, updated, deleted or restored. */
  action: "created" | "updated" | "deleted" | "restored" | (string & {});
  /** The credential (`key:<id>`, `jwt:<org>:<sub>`) or job that made the change. */
  actor: string;
  before?: JsonObject | null;
  after?: JsonObject | null;
  cause?: JsonObject | null;
  job_id?: string | null;
  created_at: string;
}

/** The answer of `GET /api/v1/memories/{id}/revisions` (`RevisionList`), oldest first. */
export interface RevisionList {
  revisions: RevisionBody[];
}

/** The body of `POST /api/v1/memories/{id}/restore` (`RestoreRequest`). */
export interface RestoreRequest {
  revision_id: string;
}

/** Filters of a search (`SearchFilter`). */
export interface SearchFilter {
  topic?: string | null;
  /** Each key must equal the memory's metadata value. */
  metadata?: JsonObject;
  created_after?: DateTimeInput | null;
  created_before?: DateTimeInput | null;
  updated_after?: DateTimeInput | null;
  updated_before?: DateTimeInput | null;
  /** Memories said after this time (`said_at`). */
  said_after?: DateTimeInput | null;
  said_before?: DateTimeInput | null;
}

/** The body of `POST /api/v1/memories/search` (`SearchRequest`). */
export interface SearchRequest {
  /** Exactly the scope searched. */
  scope: Scope;
  search_query: string;
  /** 1 to 100 (default 10). */
  top_k?: number | null;
  filter?: SearchFilter | null;
  /**
   * From 0 (default: relevance alone) to 1: how much a memory said recently outranks an older
   * match; a score becomes `(1 - w) * relevance + w * 0.5^(age / recency_half_life_days)`.
   */
  recency_weight?: number | null;
  /** The age in days at which recency halves (default 30; at most 36,525); weighs nothing without `recency_weight`. */
  recency_half_life_days?: number | null;
}

/** One hit of a search (`SearchResult`). */
export interface SearchResult {
  memory: MemoryBody;
  /** Fused relevance in [0, 1]; higher is better. */
  score: number;
}

/** The answer of `POST /api/v1/memories/search` (`SearchResponse`). */
export interface SearchResponse {
  results: SearchResult[];
}

/** One attribute of a scope's profile (`ProfileAttributeBody`). */
export interface ProfileAttributeBody {
  /** What the memory sets, as consolidation names it: "name", "age", "residence", "favourite colour". */
  attribute: string;
  /** The value in the fact's own words ("Hamburg" for "User lives in Hamburg"). */
  value: string;
  /** The memory that sets it. */
  memory_id: string;
  fact: string;
  /** When that memory last changed. */
  updated_at: string;
}

/** The answer of `GET /api/v1/memories/profile` (`ProfileBody`). */
export interface ProfileBody {
  scope: Scope;
  /** One entry per attribute, by attribute name. */
  attributes: ProfileAttributeBody[];
}

// ---------------------------------------------------------------------------------------------
// Generation jobs
// ---------------------------------------------------------------------------------------------

/** Where a job reads (`SourceType`); `compaction` jobs come from `sessions.compact`. */
export type SourceType = "session" | "events" | "memories" | "compaction";

/** A job's state. */
export type JobStatus = "pending" | "running" | "completed" | "failed";

/** A job's extractor. */
export type Extractor = "rules" | "llm";

/** The four managed topics. */
export type ManagedTopic =
  | "USER_PERSONAL_INFO"
  | "USER_PREFERENCES"
  | "KEY_CONVERSATION_DETAILS"
  | "EXPLICIT_INSTRUCTIONS";

/** A custom topic of a generation config. */
export interface CustomTopic {
  name: string;
  description?: string;
}

/** The events of a session a job reads, by `seq`, inclusive (`EventRange`). */
export interface EventRange {
  from_seq?: number | null;
  to_seq?: number | null;
}

/** An event sent inline to a job (`InlineEventBody`). */
export interface InlineEventBody {
  content: string;
  author?: string;
  /** user (default), assistant, tool or system. */
  role?: Role | null;
  /** Optional; derived from position and content when absent. */
  id?: string | null;
  /** When it was said: what "yesterday" or "last month" in it count from (default: the job's time). */
  timestamp?: DateTimeInput | null;
}

/** A finished fact, only consolidated (`DirectFactBody`). */
export interface DirectFactBody {
  fact: string;
  topic?: string | null;
  confidence?: number | null;
}

/** How a job extracts and consolidates (`GenerationConfigBody`). */
export interface GenerationConfig {
  /** rules (default, offline) or llm (needs LLM_PROVIDER on the server). */
  extractor?: Extractor | null;
  /** Managed topic names or custom `{name, description}`; default: the managed set. */
  topics?: Array<ManagedTopic | (string & {}) | CustomTopic>;
  /** Worked examples for the llm extractor: `{conversation: [{role, content}], facts: [{fact, topic}]}`. */
  examples?: JsonObject[];
  /** Add every extracted fact as a new memory, skipping duplicate detection and updates. */
  disable_consolidation?: boolean;
  /** TTL of memories the job creates. */
  created_ttl_seconds?: number | null;
  /** TTL set on memories the job updates. */
  updated_ttl_seconds?: number | null;
  /** Metadata of the memories the job creates (and merges into those it updates). */
  metadata?: JsonObject;
  /** What an update does to a memory's metadata. */
  metadata_merge?: "merge" | "overwrite" | "require_exact_match" | null;
}

/** The body of `POST /api/v1/memories/generate` (`GenerateRequestBody`). */
export interface GenerateRequest {
  /** Not `compaction`: the server refuses it here (`sessions.compact` asks for one). */
  source_type: Exclude<SourceType, "compaction">;
  /** For `session`: the session's id. */
  source_reference?: string | null;
  /** Where the memories go; default for `session`: the session's scope. Required otherwise. */
  scope?: Scope | null;
  /** For `session`: only these events. Without it, the events not processed yet for this scope. */
  event_range?: EventRange | null;
  /** For `events`: the conversation, not stored as a session. */
  events?: InlineEventBody[] | null;
  /** For `memories`: finished facts, only consolidated. */
  memories?: DirectFactBody[] | null;
  config?: GenerationConfig;
}

/** What a job changed, by kind (`JobCounts`). */
export interface JobCounts {
  added: number;
  updated: number;
  deleted: number;
  /** Extracted facts that were already known. */
  unchanged: number;
}

/** A job: a memory generation, or a compaction (`JobBody`). */
export interface JobBody {
  id: string;
  status: JobStatus;
  source_type: SourceType;
  source_reference?: string | null;
  scope: Scope;
  extractor: Extractor;
  attempts: number;
  max_attempts: number;
  /** The last failure: the reason of a failed job, or of the attempt before a retry. */
  error?: string | null;
  created_at: string;
  updated_at: string;
  started_at?: string | null;
  finished_at?: string | null;
  /** When a pending job that failed will be tried again. */
  retry_at?: string | null;
  events_processed: number;
  /** The session holds more events than one job reads; generate again to continue. */
  more_events_pending: boolean;
  facts_extracted: number;
  memories_added: string[];
  memories_updated: string[];
  memories_deleted: string[];
  counts: JobCounts;
  llm_usage: JsonObject;
  /** A compaction job's summary event, once written; null when there was nothing to summarise. */
  compaction_event_id?: string | null;
  /** What that summary covers. */
  compaction?: CompactionBody | null;
}

// ---------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------

/** A permission of a key or token. `ADMIN` holds every permission. */
export type Permission = "SESSION_READ" | "SESSION_WRITE" | "MEMORY_READ" | "MEMORY_WRITE" | "ADMIN";

/** The body of `POST /api/v1/keys` (`CreateKeyRequest`). */
export interface CreateKeyRequest {
  name: string;
  permissions: Permission[];
  /** Confines the key to this scope (within the creator's). */
  scope?: Scope | null;
  /** Up to ten years; or give `expires_at`. */
  expires_in_seconds?: number | null;
  /** In the future; not with `expires_in_seconds`. */
  expires_at?: DateTimeInput | null;
  /** Requests per second for this key (burst twice that); at most the creator's rate. */
  rate_limit_per_second?: number | null;
}

/** A key, without its text (`KeyBody`). */
export interface KeyBody {
  id: string;
  org_id: string;
  name: string;
  /** The first characters of the key, to recognise it. */
  prefix: string;
  permissions: Array<Permission | (string & {})>;
  scope?: Scope | null;
  rate_limit_per_second?: number | null;
  created_at: string;
  expires_at?: string | null;
  revoked_at?: string | null;
  last_used_at?: string | null;
  /** The key that minted this one, if a key did. */
  parent_id?: string | null;
}

/** A new key: the only time its text is shown (`CreatedKeyBody`). */
export interface CreatedKeyBody extends KeyBody {
  /** The key itself (`ck_...`); store it now, it cannot be shown again. */
  key: string;
}

/** The answer of `GET /api/v1/keys` (`KeyList`). */
export interface KeyList {
  keys: KeyBody[];
}
