// A session's history through the client, against the real server: its state at any event,
// forks, rewinds (and the context leaving rewound events out), and parent sessions.
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

const append = (id, content, stateDelta) =>
  ciq.sessions.append(id, { author: "user", content, invocation_id: `inv-${content}`, actions: { state_delta: stateDelta } });

/** Events 1 to 4 with state deltas, and state patches between them: the states after each are known. */
async function history(extra = {}) {
  const session = await ciq.sessions.create({ user_id: unique("lineage"), state: { step: 0, keep: true }, ...extra });
  await append(session.id, "one", { step: 1, city: "Berlin" });
  await ciq.sessions.patchState(session.id, { keep: null, mood: "curious" });
  await append(session.id, "two", { step: 2 });
  await append(session.id, "three", { step: 3, city: "Hamburg", nested: { a: 1 } });
  await ciq.sessions.patchState(session.id, { nested: { b: 2 } });
  await append(session.id, "four", {});
  return session;
}

const AT_ONE = { step: 1, city: "Berlin", mood: "curious" };
const AT_TWO = { step: 2, city: "Berlin", mood: "curious" };
const AT_THREE = { step: 3, city: "Hamburg", mood: "curious", nested: { a: 1, b: 2 } };

/** Rejects with a ContextIQError of this status and code (and field, if given). */
const problem = (status, code, field) => (err) => {
  assert.ok(err instanceof ContextIQError, String(err));
  assert.equal(err.status, status, err.message);
  assert.equal(err.code, code, err.message);
  if (field !== undefined) assert.equal(err.field, field, err.message);
  return true;
};

const allEvents = async (id) => (await ciq.sessions.events(id, { limit: 1000 })).events;
const contextSeqs = async (id) =>
  (await ciq.sessions.context(id, { budget_tokens: 2000, memory_top_k: 0 })).events.map((part) => part.event.seq);

describe("lineage", () => {
  test("state: now, and at any event, rebuilt from deltas and patches", async () => {
    const session = await history();
    const recorder = recordingFetch();
    const client = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, fetch: recorder.fetch });
    const at = async (seq) => {
      const answer = await client.sessions.state(session.id, { at_seq: seq });
      assert.equal(answer.session_id, session.id);
      assert.equal(answer.at_seq, seq);
      return answer.state;
    };
    assert.deepEqual(await at(0), { step: 0, keep: true });
    // After event 1 and the patch that followed it, before event 2.
    assert.deepEqual(await at(1), AT_ONE);
    assert.deepEqual(await at(2), AT_TWO);
    assert.deepEqual(await at(3), AT_THREE);
    assert.deepEqual(await at(4), AT_THREE);
    assert.deepEqual(recorder.requests[0].query, { at_seq: "0" });
    assert.equal(recorder.requests[0].method, "GET");
    assert.equal(recorder.requests[0].path, `/api/v1/sessions/${session.id}/state`);

    const now = await client.sessions.state(session.id);
    assert.deepEqual(now, { session_id: session.id, at_seq: 4, state: AT_THREE });
    assert.deepEqual(recorder.requests.at(-1).query, {}, "no at_seq: now");
    assert.deepEqual((await ciq.sessions.get(session.id, { include_events: false })).state, AT_THREE);

    await assert.rejects(ciq.sessions.state(session.id, { at_seq: 5 }), problem(422, "validation_failed", "at_seq"));
    await assert.rejects(ciq.sessions.state(session.id, { at_seq: -1 }), problem(422, "validation_failed", "at_seq"));
    await assert.rejects(ciq.sessions.state(MISSING), problem(404, "session_not_found"));
    await assert.rejects(ciq.sessions.state(MISSING, { at_seq: 0 }), problem(404, "session_not_found"));
  });

  test("fork at a seq: forked_from, copied events, the state as it was there", async () => {
    const source = await history({ metadata: { channel: "web" }, agent_id: "planner" });
    const sourceEvents = await allEvents(source.id);
    const fork = await ciq.sessions.fork(source.id, { at_seq: 2, metadata: { branch: "b" } });
    assert.notEqual(fork.id, source.id);
    assert.deepEqual(fork.forked_from, { session_id: source.id, seq: 2 });
    assert.deepEqual(fork.state, AT_TWO);
    assert.deepEqual(fork.metadata, { branch: "b" });
    assert.equal(fork.event_count, 2);
    assert.equal(fork.user_id, source.user_id);
    assert.equal(fork.agent_id, "planner");
    assert.deepEqual(fork.scope, source.scope);
    assert.equal(fork.parent_session_id ?? null, null);
    assert.equal(fork.events, undefined, "the answer has no events");

    const copies = await allEvents(fork.id);
    assert.equal(copies.length, 2);
    copies.forEach((copy, i) => {
      const original = sourceEvents[i];
      assert.notEqual(copy.id, original.id, "copies get ids of their own");
      assert.equal(copy.session_id, fork.id);
      for (const field of ["seq", "content", "author", "role", "invocation_id", "token_count", "actions", "timestamp", "kind"]) {
        assert.deepEqual(copy[field], original[field], field);
      }
    });
    assert.equal(fork.token_count, copies.reduce((sum, event) => sum + event.token_count, 0));
    assert.deepEqual((await ciq.sessions.get(fork.id)).forked_from, { session_id: source.id, seq: 2 });

    // The fork's history rebuilds as the source's did, and it goes on by itself.
    assert.deepEqual((await ciq.sessions.state(fork.id, { at_seq: 1 })).state, AT_ONE);
    assert.equal((await append(fork.id, "fork-three", { step: 30 })).seq, 3);
    assert.equal((await ciq.sessions.get(fork.id, { include_events: false })).event_count, 3);
    const unchanged = await ciq.sessions.get(source.id, { include_events: false });
    assert.equal(unchanged.event_count, 4, "the source is unchanged");
    assert.deepEqual(unchanged.state, AT_THREE);
    assert.deepEqual(unchanged.forked_from ?? null, null);
    assert.deepEqual(await allEvents(source.id), sourceEvents);

    // At 0: no events, the state the source was created with.
    const empty = await ciq.sessions.fork(source.id, { at_seq: 0 });
    assert.equal(empty.event_count, 0);
    assert.deepEqual(empty.state, { step: 0, keep: true });
    assert.deepEqual(empty.forked_from, { session_id: source.id, seq: 0 });
  });

  test("fork by invocation, by default, and with an id of the caller's", async () => {
    const source = await history({ metadata: { channel: "web" } });
    const byInvocation = await ciq.sessions.fork(source.id, { invocation_id: "inv-three" });
    assert.equal(byInvocation.event_count, 3);
    assert.deepEqual(byInvocation.forked_from, { session_id: source.id, seq: 3 });
    assert.deepEqual(byInvocation.state, AT_THREE);

    // No body: the whole history, the current state, the source's metadata.
    const recorder = recordingFetch();
    const client = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, fetch: recorder.fetch });
    const whole = await client.sessions.fork(source.id);
    assert.equal(recorder.requests[0].method, "POST");
    assert.equal(recorder.requests[0].path, `/api/v1/sessions/${source.id}/fork`);
    assert.equal(recorder.requests[0].status, 201);
    assert.equal(whole.event_count, 4);
    assert.deepEqual(whole.forked_from, { session_id: source.id, seq: 4 });
    assert.deepEqual(whole.state, AT_THREE);
    assert.deepEqual(whole.metadata, { channel: "web" });
    const expiring = await ciq.sessions.fork(source.id, { ttl_seconds: 3600 });
    const expiresIn = Date.parse(expiring.expires_at) - Date.now();
    assert.ok(expiresIn > 3_500_000 && expiresIn <= 3_600_000, `expires in ${expiresIn} ms`);

    // A named fork; the name cannot be taken twice.
    const name = crypto.randomUUID();
    const named = await ciq.sessions.fork(source.id, { session_id: name, at_seq: 1 });
    assert.equal(named.id, name);
    assert.equal((await ciq.sessions.get(name, { include_events: false })).event_count, 1);
    await assert.rejects(ciq.sessions.fork(source.id, { session_id: name, at_seq: 1 }), problem(409, "session_exists"));
    await assert.rejects(ciq.sessions.fork(source.id, { session_id: source.id }), problem(409, "session_exists"));
  });

  test("fork: 422 on bad input, 404 on a missing source", async () => {
    const source = await history();
    for (const [body, field] of [
      [{ at_seq: 5 }, "at_seq"],
      [{ at_seq: -1 }, undefined],
      [{ at_seq: 1, invocation_id: "inv-one" }, "invocation_id"],
      [{ invocation_id: "no-such-invocation" }, "invocation_id"],
      [{ at_seq: "2" }, "at_seq"],
      [{ unknown: 1 }, undefined],
      [{ session_id: "not-a-uuid" }, "session_id"],
      [{ ttl_seconds: 60, expires_at: new Date(Date.now() + 60_000) }, "expires_at"],
    ]) {
      await assert.rejects(ciq.sessions.fork(source.id, body), problem(422, "validation_failed", field), JSON.stringify(body));
    }
    await assert.rejects(ciq.sessions.fork(MISSING), problem(404, "session_not_found"));
    await assert.rejects(ciq.sessions.fork(MISSING, { at_seq: 0 }), problem(404, "session_not_found"));
    const { sessions } = await ciq.sessions.list({ user_id: source.user_id });
    assert.deepEqual(sessions.map((s) => s.id), [source.id], "a refused fork creates nothing");
  });

  test("rewind: the state restored, a rewind event, the rewound events out of the context", async () => {
    const session = await history();
    const rewound = await ciq.sessions.rewind(session.id, { to_seq: 1 });
    assert.equal(rewound.id, session.id);
    assert.deepEqual(rewound.state, AT_ONE);
    assert.equal(rewound.event_count, 5, "the rewind event counts");
    assert.equal(rewound.events, undefined);

    const events = await allEvents(session.id);
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5], "nothing is deleted");
    const marker = events[4];
    assert.equal(marker.kind, "rewind");
    assert.deepEqual(marker.rewind, { to_seq: 1, before_invocation_id: "inv-two" });
    assert.equal(marker.author, "system:rewind");
    assert.equal(marker.role, "system");
    assert.equal(marker.compaction, undefined);
    // ADK's delta: what changed, null for what went.
    assert.deepEqual(marker.actions.state_delta, { step: 1, city: "Berlin", nested: null });
    assert.ok(events.slice(0, 4).every((e) => e.kind === "message" && e.rewind === undefined));
    assert.deepEqual((await ciq.sessions.state(session.id, { at_seq: 4 })).state, AT_THREE, "the history before the rewind is kept");
    assert.deepEqual((await ciq.sessions.state(session.id, { at_seq: 5 })).state, AT_ONE);

    // The context leaves the rewound events (and the rewind event) out; a new turn follows it.
    assert.equal((await append(session.id, "two-again", { step: 2 })).seq, 6);
    const context = await ciq.sessions.context(session.id, { budget_tokens: 2000, memory_top_k: 0 });
    assert.deepEqual(context.events.map((part) => part.event.seq), [1, 6]);
    assert.ok(!context.text.includes("three") && context.text.includes("two-again"), context.text);
    assert.deepEqual(context.state.state, AT_TWO);

    // ADK's way: before an invocation. A rewind to a rewound point brings its events back.
    const again = await ciq.sessions.rewind(session.id, { before_invocation_id: "inv-four" });
    assert.equal(again.event_count, 7);
    assert.deepEqual(again.state, AT_THREE);
    const second = (await allEvents(session.id)).at(-1);
    assert.equal(second.kind, "rewind");
    assert.deepEqual(second.rewind, { to_seq: 3, before_invocation_id: "inv-four" });
    assert.deepEqual(await contextSeqs(session.id), [1, 2, 3]);

    // A rewind to a point whose next event has no invocation: before_invocation_id is null.
    const plain = await ciq.sessions.create({ user_id: unique("lineage"), state: { n: 0 } });
    await ciq.sessions.appendMany(plain.id, [
      { author: "user", content: "first", actions: { state_delta: { n: 1 } } },
      { author: "user", content: "second", actions: { state_delta: { n: 2, extra: true } } },
    ]);
    const back = await ciq.sessions.rewind(plain.id, { to_seq: 0 });
    assert.deepEqual(back.state, { n: 0 });
    const zero = (await allEvents(plain.id)).at(-1);
    assert.deepEqual(zero.rewind, { to_seq: 0, before_invocation_id: null });
    assert.deepEqual(zero.actions.state_delta, { n: 0, extra: null });
  });

  test("rewind: 422 on bad input, 404 on a missing session, nothing written", async () => {
    const session = await history();
    for (const [body, field] of [
      [{}, undefined],
      [{ to_seq: 4 }, "to_seq"],
      [{ to_seq: 5 }, "to_seq"],
      [{ to_seq: -1 }, undefined],
      [{ to_seq: 1, before_invocation_id: "inv-one" }, undefined],
      [{ before_invocation_id: "nope" }, "before_invocation_id"],
      [{ to_seq: "1" }, "to_seq"],
      [{ to_seq: 1, unknown: true }, undefined],
    ]) {
      await assert.rejects(ciq.sessions.rewind(session.id, body), problem(422, "validation_failed", field), JSON.stringify(body));
    }
    assert.equal((await allEvents(session.id)).length, 4, "a refused rewind writes nothing");
    await assert.rejects(ciq.sessions.rewind(MISSING, { to_seq: 0 }), problem(404, "session_not_found"));
  });

  test("a write-only key gets receipts from fork and rewind", async () => {
    const session = await history();
    const writer = await ciq.keys.create({ name: unique("writer"), permissions: ["SESSION_WRITE"] });
    const w = new ContextIQ({ baseUrl: server.baseUrl, apiKey: writer.key });
    const forked = await w.sessions.fork(session.id, { at_seq: 2 });
    assert.deepEqual(Object.keys(forked).sort(), ["id", "updated_at"]);
    assert.notEqual(forked.id, session.id);
    assert.deepEqual((await ciq.sessions.get(forked.id, { include_events: false })).forked_from, { session_id: session.id, seq: 2 });
    const rewound = await w.sessions.rewind(session.id, { to_seq: 2 });
    assert.deepEqual(Object.keys(rewound).sort(), ["id", "updated_at"]);
    assert.equal(rewound.id, session.id);
    assert.deepEqual((await ciq.sessions.get(session.id, { include_events: false })).state, AT_TWO);
    await assert.rejects(w.sessions.state(session.id), problem(403, "forbidden"));
  });

  test("children are listed under their parent and deleted with it", async () => {
    const user = unique("parent");
    const parent = await ciq.sessions.create({ user_id: user });
    assert.equal(parent.parent_session_id, null);
    assert.equal(parent.forked_from, null);
    const child = (agent, parentId = parent.id) =>
      ciq.sessions.create({ user_id: user, agent_id: agent, parent_session_id: parentId, scope: { user_id: user, agent_id: agent } });
    const planner = await child("planner");
    const searcher = await child("searcher");
    const grandchild = await child("planner", planner.id);
    const unrelated = await ciq.sessions.create({ user_id: user });
    assert.equal(planner.parent_session_id, parent.id);
    assert.equal((await ciq.sessions.get(grandchild.id)).parent_session_id, planner.id);

    const recorder = recordingFetch();
    const client = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, fetch: recorder.fetch });
    const listed = await client.sessions.list({ parent_session_id: parent.id });
    assert.deepEqual(recorder.requests[0].query, { parent_session_id: parent.id });
    assert.deepEqual(listed.sessions.map((s) => s.id).sort(), [planner.id, searcher.id].sort());
    assert.ok(listed.sessions.every((s) => s.parent_session_id === parent.id));
    const iterated = [];
    for await (const s of ciq.sessions.iter({ parent_session_id: parent.id, limit: 1 })) iterated.push(s.id);
    assert.deepEqual(iterated.sort(), [planner.id, searcher.id].sort());
    assert.deepEqual((await ciq.sessions.list({ parent_session_id: planner.id })).sessions.map((s) => s.id), [grandchild.id]);
    assert.deepEqual((await ciq.sessions.list({ parent_session_id: unrelated.id })).sessions, []);
    assert.deepEqual((await ciq.sessions.list({ parent_session_id: parent.id, agent_id: "searcher" })).sessions.map((s) => s.id), [searcher.id]);

    // A fork keeps its source's parent: it is one more child.
    const forked = await ciq.sessions.fork(searcher.id);
    assert.equal(forked.parent_session_id, parent.id);
    assert.deepEqual(forked.forked_from, { session_id: searcher.id, seq: 0 });
    assert.equal((await ciq.sessions.list({ parent_session_id: parent.id })).sessions.length, 3);

    // A parent must be within reach, and its scope within the child's.
    await assert.rejects(
      ciq.sessions.create({ user_id: user, parent_session_id: MISSING }),
      problem(422, "validation_failed", "parent_session_id"),
    );
    await assert.rejects(
      ciq.sessions.create({ user_id: unique("other"), parent_session_id: parent.id }),
      problem(422, "validation_failed", "scope"),
    );
    await assert.rejects(ciq.sessions.list({ parent_session_id: "not-a-uuid" }), (err) => err instanceof ContextIQError && err.status >= 400 && err.status < 500);

    // Deleting the parent deletes its descendants, and nothing else.
    await ciq.sessions.delete(parent.id);
    for (const gone of [parent, planner, searcher, grandchild, forked]) {
      await assert.rejects(ciq.sessions.get(gone.id), problem(404, "session_not_found"));
    }
    assert.equal((await ciq.sessions.get(unrelated.id)).id, unrelated.id);
    assert.deepEqual((await ciq.sessions.list({ parent_session_id: parent.id })).sessions, []);
  });
});
