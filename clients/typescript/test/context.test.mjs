// Context engineering through the client: token counts, state deltas, compaction, a context
// within a budget, and the live streams of events and jobs, against the real server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ContextIQ, ContextIQError } from "../dist/index.js";
import { recordingFetch, startServer, unique } from "./helpers.mjs";

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

  test("a state delta replaces keys whole, atomically with the append", async () => {
    const session = await ciq.sessions.create({ user_id: unique("ctx"), state: { keep: 1, cart: { a: 1 }, gone: true } });
    const { events } = await ciq.sessions.appendMany(session.id, [
      { author: "user", content: "add b", actions: { state_delta: { cart: { b: 2 } } } },
      { author: "agent", role: "assistant", content: "done", actions: { state_delta: { gone: null, step: 2 } } },
      { author: "user", content: "thanks" },
    ]);
    assert.deepEqual(events.map((e) => e.actions.state_delta), [{ cart: { b: 2 } }, { gone: null, step: 2 }, {}]);
    // Unlike a merge patch, a delta's object replaces the value and null is a value.
    const read = await ciq.sessions.get(session.id);
    assert.deepEqual(read.state, { keep: 1, cart: { b: 2 }, gone: null, step: 2 });
    assert.deepEqual(read.events.map((e) => e.actions), events.map((e) => e.actions));
    assert.equal(read.token_count, events.reduce((sum, e) => sum + e.token_count, 0));
    assert.ok(events.every((e) => e.kind === "message" && e.token_count > 0 && e.compaction === undefined));

    // A refused delta refuses the append: neither the event nor the state changes.
    await assert.rejects(
      ciq.sessions.append(session.id, { author: "user", content: "x", actions: { state_delta: null } }),
      (err) => err instanceof ContextIQError && err.status === 422 && err.field === "actions.state_delta",
    );
    const after = await ciq.sessions.get(session.id, { include_events: false });
    assert.equal(after.event_count, 3);
    assert.deepEqual(after.state, read.state);
  });

  test("a session's compaction policy compacts it without being asked", async () => {
    const session = await ciq.sessions.create({ user_id: unique("ctx"), compaction_policy: { every_events: 4, keep_recent_events: 1 } });
    assert.deepEqual(session.compaction, {
      policy: { every_events: 4, token_threshold: null, keep_recent_events: 1 },
      through_seq: 0,
      uncompacted_events: 0,
      uncompacted_tokens: 0,
    });
    assert.equal(session.token_count, 0);
    for (const turn of turns(5)) await ciq.sessions.append(session.id, turn);
    const deadline = Date.now() + 10_000;
    let summary;
    while (!summary && Date.now() < deadline) {
      summary = (await ciq.sessions.events(session.id)).events.find((e) => e.kind === "compaction");
      if (!summary) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(summary, "a compaction event within 10 s");
    assert.equal(summary.compaction.start_seq, 1);
    assert.ok(summary.compaction.end_seq >= 3 && summary.compaction.end_seq <= 4, JSON.stringify(summary.compaction));
    assert.equal(summary.token_count, summary.compaction.tokens_after);
    const read = await ciq.sessions.get(session.id, { include_events: false });
    assert.equal(read.compaction.through_seq, summary.compaction.end_seq);
    assert.equal(read.compaction.uncompacted_events, 5 - summary.compaction.end_seq);
    assert.ok(read.compaction.uncompacted_tokens > 0);
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

    // The state, the memories and the budget are the caller's to choose.
    await ciq.memories.create({ scope: { user_id: session.user_id }, fact: "Travels by train to Lisbon every spring" });
    const withMemory = await ciq.sessions.context(session.id, { budget_tokens: 1000, query: "train to Lisbon" });
    assert.equal(withMemory.memories[0].fact, "Travels by train to Lisbon every spring");
    assert.ok(withMemory.memories[0].token_count > 0);
    assert.match(withMemory.text, /Travels by train to Lisbon every spring/);
    const bare = await ciq.sessions.context(session.id, { budget_tokens: 1000, query: "train to Lisbon", memory_top_k: 0, include_state: false });
    assert.equal(bare.state, null);
    assert.deepEqual(bare.memories, []);
    const tight = await ciq.sessions.context(session.id, { budget_tokens: 60 });
    assert.ok(tight.total_tokens <= 60 && tight.events.length >= 1, JSON.stringify(tight.coverage));
    assert.equal(tight.events.at(-1).event.seq, 12, "the newest event is always in");

    await assert.rejects(ciq.sessions.context(session.id, { budget_tokens: 0 }), (err) => err instanceof ContextIQError && err.status === 422 && err.field === "budget_tokens");
    await assert.rejects(ciq.sessions.compact(MISSING), (err) => err instanceof ContextIQError && err.status === 404 && err.code === "session_not_found");
    await assert.rejects(ciq.sessions.context(MISSING, { budget_tokens: 100 }), (err) => err instanceof ContextIQError && err.status === 404 && err.code === "session_not_found");
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

    await assert.rejects(ciq.sessions.streamEvents(MISSING).next(), (err) => err instanceof ContextIQError && err.status === 404 && err.code === "session_not_found");
    const other = await ciq.sessions.create({ user_id: unique("ctx") });
    await assert.rejects(ciq.sessions.streamEvents(other.id, { after_seq: -1 }).next(), (err) => err.status === 422 && err.field === "after_seq");
  });

  test("a stream with for await: compaction events, break, the caller's signal, the engine", async () => {
    const recorder = recordingFetch();
    const client = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, engine: unique("eng"), fetch: recorder.fetch });
    const session = await client.sessions.create({ user_id: unique("ctx") });
    await client.sessions.appendMany(session.id, turns(3));
    const job = await client.sessions.compact(session.id, { keep_recent_events: 1 });
    const seen = [];
    for await (const event of client.sessions.streamEvents(session.id, { after_seq: 1 })) {
      seen.push(event);
      if (event.kind === "compaction") break;
    }
    assert.deepEqual(seen.map((e) => e.seq), [2, 3, 4]);
    assert.equal(seen.at(-1).id, (await client.jobs.wait(job.id, { pollIntervalMs: 50 })).compaction_event_id);
    assert.deepEqual(seen.at(-1).compaction, { ...seen.at(-1).compaction, start_seq: 1, end_seq: 2 });
    const request = recorder.requests.find((r) => r.path.endsWith("/events/stream"));
    assert.deepEqual(request.query, { after_seq: "1" });
    assert.equal(request.headers["x-engine-id"], client.engine);
    assert.match(request.headers.accept, /text\/event-stream/);

    // RequestOptions.signal ends a stream too, waiting or not; an aborted one sends nothing.
    const aborter = new AbortController();
    const live = [];
    setTimeout(() => client.sessions.append(session.id, { author: "user", content: "one more" }), 50);
    setTimeout(() => aborter.abort(), 500);
    for await (const event of client.sessions.streamEvents(session.id, { after_seq: 4 }, { signal: aborter.signal })) live.push(event.seq);
    assert.deepEqual(live, [5]);
    const sent = recorder.requests.length;
    for await (const _ of client.sessions.streamEvents(session.id, { after_seq: 0 }, { signal: AbortSignal.abort() })) assert.fail("no event");
    assert.equal(recorder.requests.length, sent);

    // Another engine does not see the session.
    await assert.rejects(client.withEngine(null).sessions.streamEvents(session.id).next(), (err) => err.code === "session_not_found");
    await assert.rejects(client.withEngine(null).jobs.stream(job.id).next(), (err) => err.code === "job_not_found");
  });

  test("a job stream ends with the finished job", async () => {
    const session = await ciq.sessions.create({ user_id: unique("ctx") });
    await ciq.sessions.appendMany(session.id, turns(4));
    const job = await ciq.sessions.compact(session.id);
    const seen = [];
    for await (const update of ciq.jobs.stream(job.id)) seen.push(update);
    assert.ok(seen.length > 0 && seen.every((update) => update.id === job.id));
    assert.equal(seen.at(-1).status, "completed");
    assert.equal(seen.at(-1).compaction_event_id, (await ciq.sessions.events(session.id)).events.at(-1).id);
    assert.ok(seen.slice(0, -1).every((update) => update.status === "pending" || update.status === "running"));

    // A finished job: the stream sends it once and ends.
    const again = [];
    for await (const update of ciq.jobs.stream(job.id)) again.push(update);
    assert.deepEqual(again, [seen.at(-1)]);
    await assert.rejects(ciq.jobs.stream(MISSING).next(), (err) => err instanceof ContextIQError && err.status === 404 && err.code === "job_not_found");
  });
});
