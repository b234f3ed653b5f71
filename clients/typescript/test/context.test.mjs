// Context engineering through the client: token counts, state deltas, compaction, a context
// within a budget, and the live streams of events and jobs, against the real server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ContextIQ, ContextIQError } from "../dist/index.js";
import { startServer, unique } from "./helpers.mjs";

let server;
let ciq;
const MISSING = "0190b8a4-0000-7000-8000-000000000001";

before(async () => {
  server = await startServer();
  ciq = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey });
});
after(async () => {
  await server?.stop();
});

const turns = (n) =>
  Array.from({ length: n }, (_, i) => ({
    author: i % 2 ? "agent" : "user",
    role: i % 2 ? "assistant" : "user",
    content: `Turn ${i + 1}: the train to Lisbon leaves Hamburg at ${i + 1}:15.`,
  }));

describe("context", () => {
  test("token counts, state deltas and the compaction status", async () => {
    const session = await ciq.sessions.create({
      user_id: unique("ctx"),
      state: { step: 0 },
      compaction_policy: { every_events: 50, keep_recent_events: 2 },
    });
    assert.deepEqual(session.compaction.policy, { every_events: 50, token_threshold: null, keep_recent_events: 2 });
    const event = await ciq.sessions.append(session.id, { author: "user", content: "Hello, world!", actions: { state_delta: { step: 1 } } });
    assert.equal(event.token_count, 4);
    assert.equal(event.kind, "message");
    assert.deepEqual(event.actions.state_delta, { step: 1 });
    const read = await ciq.sessions.get(session.id, { include_events: false });
    assert.deepEqual(read.state, { step: 1 });
    assert.equal(read.token_count, 4);
    assert.equal(read.compaction.uncompacted_events, 1);
  });

  test("compaction, then a context within its budget", async () => {
    const session = await ciq.sessions.create({ user_id: unique("ctx"), state: { cart: ["TP 571"] } });
    await ciq.sessions.appendMany(session.id, turns(12));
    const queued = await ciq.sessions.compact(session.id, { keep_recent_events: 2 });
    assert.equal(queued.source_type, "compaction");
    const job = await ciq.jobs.wait(queued.id, { pollIntervalMs: 50 });
    assert.equal(job.status, "completed");
    assert.equal(job.compaction.start_seq, 1);
    assert.equal(job.compaction.end_seq, 10);
    const { events } = await ciq.sessions.events(session.id);
    const summary = events.at(-1);
    assert.equal(summary.id, job.compaction_event_id);
    assert.equal(summary.kind, "compaction");
    assert.deepEqual(summary.compaction, job.compaction);

    const context = await ciq.sessions.context(session.id, { budget_tokens: 1000, query: "train times" });
    assert.ok(context.total_tokens <= 1000);
    assert.deepEqual(context.state.state, { cart: ["TP 571"] });
    assert.deepEqual(context.summaries.map((s) => [s.start_seq, s.end_seq]), [[1, 10]]);
    assert.deepEqual(context.events.map((e) => e.event.seq), [11, 12]);
    assert.deepEqual(context.coverage.summarised, [[1, 10]]);
    assert.deepEqual(await ciq.sessions.context(session.id, { budget_tokens: 1000, query: "train times" }), context);

    await assert.rejects(ciq.sessions.context(session.id, { budget_tokens: 0 }), (err) => err instanceof ContextIQError && err.status === 422);
    await assert.rejects(ciq.sessions.compact(MISSING), (err) => err.status === 404 && err.code === "session_not_found");
    await assert.rejects(ciq.sessions.context(MISSING, { budget_tokens: 100 }), (err) => err.status === 404);
  });

  test("a stream sends stored then live events, resumes, and ends with the session", async () => {
    const session = await ciq.sessions.create({ user_id: unique("ctx") });
    await ciq.sessions.appendMany(session.id, turns(2));
    const stream = ciq.sessions.streamEvents(session.id, { after_seq: 0 });
    assert.equal((await stream.next()).value.seq, 1);
    assert.equal((await stream.next()).value.seq, 2);
    setTimeout(() => ciq.sessions.append(session.id, { author: "user", content: "Is it on time?" }), 100);
    const live = (await stream.next()).value;
    assert.equal(live.seq, 3);
    assert.equal(live.content, "Is it on time?");
    await stream.return();

    const resumed = ciq.sessions.streamEvents(session.id, { last_event_id: 2 });
    assert.equal((await resumed.next()).value.seq, 3);
    await ciq.sessions.delete(session.id);
    assert.equal((await resumed.next()).done, true, "the stream ends with the session");

    const aborted = new AbortController();
    const open = ciq.sessions.streamEvents((await ciq.sessions.create({ user_id: unique("ctx") })).id, { signal: aborted.signal });
    setTimeout(() => aborted.abort(), 100);
    assert.equal((await open.next()).done, true, "an abort ends the stream");

    await assert.rejects(ciq.sessions.streamEvents(MISSING).next(), (err) => err.status === 404 && err.code === "session_not_found");
  });

  test("a job stream ends with the finished job", async () => {
    const session = await ciq.sessions.create({ user_id: unique("ctx") });
    await ciq.sessions.appendMany(session.id, turns(4));
    const job = await ciq.sessions.compact(session.id);
    const seen = [];
    for await (const update of ciq.jobs.stream(job.id)) seen.push(update);
    assert.ok(seen.length > 0 && seen.every((update) => update.id === job.id));
    assert.equal(seen.at(-1).status, "completed");
    await assert.rejects(ciq.jobs.stream(MISSING).next(), (err) => err.status === 404);
  });
});
