// Compiled (not run) by `npm test`: the published declarations type a consumer's code as
// intended, and refuse what the API refuses. Imports the built package, as a consumer would.
import {
  ContextIQ,
  ContextIQError,
  OPERATIONS,
  type CompactionBody,
  type ContextBody,
  type CreatedKeyBody,
  type CreatedSession,
  type EventBatch,
  type EventBody,
  type HealthBody,
  type JobBody,
  type KeyBody,
  type KeyList,
  type MemoryAnswer,
  type MemoryBody,
  type MemoryList,
  type Operation,
  type OperationId,
  type Problem,
  type RevisionList,
  type SearchResponse,
  type SessionAnswer,
  type SessionBody,
  type SessionList,
  type EventList,
  type ForkOrigin,
  type RewindDetail,
  type StateAt,
  type WriteReceipt,
} from "../dist/index.js";

export async function consumer(): Promise<void> {
  const ciq = new ContextIQ({ baseUrl: "http://127.0.0.1:8000", apiKey: "ck_...", engine: "my-agent", maxRetries: 2, timeoutMs: 10_000 });

  const created: CreatedSession = await ciq.sessions.create({ user_id: "u1", state: { step: 1 }, ttl_seconds: 60, expires_at: null });
  const got: SessionBody = await ciq.sessions.get(created.id, { include_events: false }, { engine: null });
  const list: SessionList = await ciq.sessions.list({ user_id: "u1", limit: 10 });
  for await (const s of ciq.sessions.iter({ agent_id: "a" })) {
    const id: string = s.id;
  }
  const event: EventBody = await ciq.sessions.append(got.id, { author: "user", content: { any: "json" }, role: "tool", timestamp: new Date() });
  const batch: EventBatch = await ciq.sessions.appendMany(got.id, [{ author: "user", content: "hi" }]);
  const events: EventList = await ciq.sessions.events(got.id, { limit: 5, cursor: list.next_cursor ?? undefined });
  for await (const e of ciq.sessions.iterEvents(got.id)) {
    const seq: number = e.seq;
  }
  const answer: SessionAnswer = await ciq.sessions.patchState(got.id, { step: null });
  if ("state" in answer) {
    const state: Record<string, unknown> = answer.state;
  } else {
    const receipt: WriteReceipt = answer;
  }
  const compacted: CreatedSession = await ciq.sessions.create({ user_id: "u1", compaction_policy: { every_events: 50, keep_recent_events: 4 } });
  const withDelta: EventBody = await ciq.sessions.append(compacted.id, { author: "user", content: "hi", actions: { state_delta: { step: 2 } } });
  const tokens: [number, "message" | "compaction" | "rewind", Record<string, unknown>] = [withDelta.token_count, withDelta.kind, withDelta.actions.state_delta];
  const uncompacted: number = compacted.compaction.uncompacted_tokens + compacted.token_count;
  const compaction: JobBody = await ciq.sessions.compact(compacted.id, { keep_recent_events: 2 });
  await ciq.sessions.compact(compacted.id);
  const summary: CompactionBody | null | undefined = (await ciq.jobs.wait(compaction.id)).compaction;
  const context: ContextBody = await ciq.sessions.context(compacted.id, { budget_tokens: 2000, query: "trains", memory_top_k: 3, include_state: false });
  const parts: [string, number, number[][], string | undefined] = [
    context.text, context.total_tokens, context.coverage.summarised, context.summaries[0]?.summary,
  ];
  for await (const live of ciq.sessions.streamEvents(compacted.id, { after_seq: 0, signal: AbortSignal.timeout(1000) })) {
    const seq: number = live.seq;
    const what: CompactionBody | null | undefined = live.compaction;
  }
  for await (const resumed of ciq.sessions.streamEvents(compacted.id, { last_event_id: 7 }, { signal: AbortSignal.timeout(1000), engine: "other" })) {
    const kind: string = resumed.kind;
  }
  for await (const update of ciq.jobs.stream(compaction.id, { signal: AbortSignal.timeout(1000) })) {
    const eventId: string | null | undefined = update.compaction_event_id;
  }
  const now: StateAt = await ciq.sessions.state(compacted.id);
  const then: Record<string, unknown> = (await ciq.sessions.state(compacted.id, { at_seq: 1 }, { engine: null })).state;
  const fork: SessionAnswer = await ciq.sessions.fork(compacted.id);
  await ciq.sessions.fork(compacted.id, { at_seq: 2, session_id: "0190b8a4-0000-7000-8000-000000000002", metadata: { branch: "b" }, ttl_seconds: 60 });
  await ciq.sessions.fork(compacted.id, { invocation_id: "inv-1", expires_at: new Date() });
  if ("state" in fork) {
    const origin: ForkOrigin | null | undefined = fork.forked_from;
    const parent: string | null | undefined = fork.parent_session_id;
  }
  const rewound: SessionAnswer = await ciq.sessions.rewind(compacted.id, { to_seq: 1 });
  await ciq.sessions.rewind(compacted.id, { before_invocation_id: "inv-1" });
  const child: CreatedSession = await ciq.sessions.create({ user_id: "u1", parent_session_id: compacted.id });
  const children: SessionList = await ciq.sessions.list({ parent_session_id: compacted.id });
  const marker: RewindDetail | null | undefined = withDelta.rewind;
  const deleted: void = await ciq.sessions.delete(got.id);

  const memory: MemoryBody = await ciq.memories.create({ scope: { user_id: "u1" }, fact: "Likes tea" });
  const queued: JobBody = await ciq.memories.create({ scope: { user_id: "u1" }, fact: "Likes tea", consolidate: true });
  const memories: MemoryList = await ciq.memories.list({ scope: { user_id: "u1" }, created_after: new Date(), topic: "T", said_before: new Date() });
  const said: string = memories.memories[0].said_at;
  void said;
  await ciq.memories.search({ scope: { user_id: "u1" }, search_query: "tea", recency_weight: 0.5, recency_half_life_days: 7, filter: { said_after: new Date() } });
  for await (const m of ciq.memories.iter({ scope: { user_id: "u1" }, limit: 100 })) {
    const fact: string = m.fact;
  }
  const updated: MemoryAnswer = await ciq.memories.update(memory.id, { topic: null, metadata: { a: 1 } });
  await ciq.memories.delete(memory.id, { purge: true });
  const revisions: RevisionList = await ciq.memories.revisions(memory.id);
  const restored: MemoryAnswer = await ciq.memories.restore(memory.id, revisions.revisions[0]!.id);
  await ciq.memories.restore(memory.id, { revision_id: "r" });
  const found: SearchResponse = await ciq.memories.search({ scope: { user_id: "u1" }, search_query: "tea", top_k: 3, filter: { topic: "T" } });
  const job: JobBody = await ciq.memories.generate({
    source_type: "events",
    events: [{ author: "user", content: "I live in Lisbon" }],
    scope: { user_id: "u9" },
    config: { extractor: "rules", topics: ["USER_PREFERENCES", { name: "DIET", description: "food" }], metadata_merge: "merge" },
  });
  const done: JobBody = await ciq.jobs.wait(job.id, { pollIntervalMs: 200, maxWaitMs: 5_000, signal: AbortSignal.timeout(10_000) });
  const status: "pending" | "running" | "completed" | "failed" = done.status;
  const polled: JobBody = await ciq.jobs.get(job.id);

  const key: CreatedKeyBody = await ciq.keys.create({ name: "k", permissions: ["SESSION_READ"], scope: { user_id: "u1" } });
  const keys: KeyList = await ciq.keys.list();
  const one: KeyBody = await ciq.keys.get(key.id);
  const revoked: KeyBody = await ciq.keys.revoke(key.id);

  const health: HealthBody = await ciq.health();
  const ready: HealthBody = await ciq.ready();
  const metrics: string = await ciq.metrics();
  const other: ContextIQ = ciq.withEngine("other");

  try {
    await ciq.sessions.get("missing");
  } catch (err) {
    if (err instanceof ContextIQError) {
      const fields: [number, string, string, string | undefined, string, number | undefined, Problem | undefined] = [
        err.status, err.code, err.detail, err.field, err.title, err.retryAfter, err.problem,
      ];
    }
  }

  const rows: readonly Operation[] = OPERATIONS;
  const id: OperationId = "create_session";

  // Refused at compile time.
  // @ts-expect-error user_id is required
  await ciq.sessions.create({ agent_id: "a" });
  // @ts-expect-error an unknown role
  await ciq.sessions.append("s", { author: "user", content: "x", role: "robot" });
  // @ts-expect-error a list of memories needs a scope
  await ciq.memories.list({ limit: 5 });
  // @ts-expect-error an unknown source type
  await ciq.memories.generate({ source_type: "video" });
  // @ts-expect-error compactions are asked for with sessions.compact
  await ciq.memories.generate({ source_type: "compaction", source_reference: "s" });
  // @ts-expect-error a context needs a budget
  await ciq.sessions.context("s", { query: "x" });
  // @ts-expect-error only state_delta is taken from clients, and it is an object
  await ciq.sessions.append("s", { author: "user", content: "x", actions: { state_delta: 1 } });
  // @ts-expect-error a rewind needs a target
  await ciq.sessions.rewind("s", {});
  // @ts-expect-error a rewind takes one target, not both
  await ciq.sessions.rewind("s", { to_seq: 1, before_invocation_id: "inv-1" });
  // @ts-expect-error a fork point is a seq or an invocation, not both
  await ciq.sessions.fork("s", { at_seq: 1, invocation_id: "inv-1" });
  // @ts-expect-error at_seq is a number
  await ciq.sessions.state("s", { at_seq: "1" });
  // @ts-expect-error an unknown permission
  await ciq.keys.create({ name: "k", permissions: ["ROOT"] });
  // @ts-expect-error scope values are strings
  await ciq.memories.search({ scope: { user_id: 1 }, search_query: "x" });
  // @ts-expect-error a create without consolidate answers a memory, not a job
  const notAJob: JobBody = await ciq.memories.create({ scope: { user_id: "u1" }, fact: "x" });
  // @ts-expect-error not an operation
  const bad: OperationId = "list_everything";
}
