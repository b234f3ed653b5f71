import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ContextIQ, ContextIQError } from "../dist/index.js";
import { recordingFetch, startServer, unique } from "./helpers.mjs";

let server;
let ciq;

before(async () => {
  server = await startServer();
  ciq = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey });
});
after(async () => {
  await server?.stop();
});

describe("sessions", () => {
  test("create, get, append, appendMany, events, patchState, delete", async () => {
    const user = unique("user");
    const created = await ciq.sessions.create({
      user_id: user,
      agent_id: "travel-agent",
      state: { step: 1, draft: "x" },
      metadata: { channel: "web" },
      ttl_seconds: 86400,
    });
    assert.match(created.id, /^[0-9a-f-]{36}$/);
    assert.equal(created.user_id, user);
    assert.equal(created.agent_id, "travel-agent");
    assert.deepEqual(created.scope, { user_id: user });
    assert.deepEqual(created.state, { step: 1, draft: "x" });
    assert.deepEqual(created.events, []);
    assert.equal(created.event_count, 0);
    assert.ok(created.expires_at);

    const one = await ciq.sessions.append(created.id, { author: "user", role: "user", content: "I want to go to Lisbon in May" });
    assert.equal(one.seq, 1);
    assert.equal(one.session_id, created.id);
    assert.equal(one.content, "I want to go to Lisbon in May");

    const batch = await ciq.sessions.appendMany(created.id, [
      { author: "agent", role: "assistant", content: "Lisbon it is.", invocation_id: "inv-1" },
      { author: "search", role: "tool", content: { flights: 3 }, metadata: { took_ms: 12 }, timestamp: new Date("2026-01-02T03:04:05Z") },
    ]);
    assert.deepEqual(batch.events.map((e) => e.seq), [2, 3]);
    assert.deepEqual(batch.events[1].content, { flights: 3 });
    assert.equal(batch.events[1].timestamp.slice(0, 19), "2026-01-02T03:04:05");
    assert.equal(batch.events[0].invocation_id, "inv-1");

    const full = await ciq.sessions.get(created.id);
    assert.equal(full.event_count, 3);
    assert.deepEqual(full.events.map((e) => e.author), ["user", "agent", "search"]);
    const bare = await ciq.sessions.get(created.id, { include_events: false });
    assert.equal(bare.events ?? undefined, undefined);
    assert.equal(bare.event_count, 3);

    const page = await ciq.sessions.events(created.id, { limit: 2 });
    assert.deepEqual(page.events.map((e) => e.seq), [1, 2]);
    assert.ok(page.next_cursor);
    const rest = await ciq.sessions.events(created.id, { limit: 2, cursor: page.next_cursor });
    assert.deepEqual(rest.events.map((e) => e.seq), [3]);

    const patched = await ciq.sessions.patchState(created.id, { step: 2, draft: null, nested: { a: 1 } });
    assert.deepEqual(patched.state, { step: 2, nested: { a: 1 } });
    const merged = await ciq.sessions.patchState(created.id, { nested: { b: 2 } });
    assert.deepEqual(merged.state, { step: 2, nested: { a: 1, b: 2 } });

    await ciq.sessions.delete(created.id);
    await assert.rejects(ciq.sessions.get(created.id), (err) => err instanceof ContextIQError && err.status === 404);
  });

  test("list filters by user and agent", async () => {
    const user = unique("lister");
    const a = await ciq.sessions.create({ user_id: user, agent_id: "a" });
    const b = await ciq.sessions.create({ user_id: user, agent_id: "b" });
    const all = await ciq.sessions.list({ user_id: user });
    assert.deepEqual(all.sessions.map((s) => s.id).sort(), [a.id, b.id].sort());
    assert.equal(all.next_cursor ?? null, null);
    const onlyB = await ciq.sessions.list({ user_id: user, agent_id: "b" });
    assert.deepEqual(onlyB.sessions.map((s) => s.id), [b.id]);
  });

  test("iter follows next_cursor over more than two pages", async () => {
    const user = unique("pager");
    const ids = [];
    for (let i = 0; i < 7; i++) ids.push((await ciq.sessions.create({ user_id: user, state: { i } })).id);
    const recorder = recordingFetch();
    const client = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, fetch: recorder.fetch });
    const seen = [];
    for await (const session of client.sessions.iter({ user_id: user, limit: 2 })) seen.push(session.id);
    assert.deepEqual(seen.slice().sort(), ids.slice().sort());
    assert.equal(new Set(seen).size, 7);
    const pages = recorder.requests.filter((r) => r.path === "/api/v1/sessions");
    assert.equal(pages.length, 4, "7 sessions at 2 a page are 4 pages");
    assert.equal(pages[0].query.cursor, undefined);
    for (const later of pages.slice(1)) assert.ok(later.query.cursor, "later pages send the cursor");
    // Newest first.
    assert.deepEqual(seen, ids.slice().reverse());
  });

  test("iterEvents follows next_cursor over more than two pages", async () => {
    const session = await ciq.sessions.create({ user_id: unique("events") });
    const events = Array.from({ length: 10 }, (_, i) => ({ author: "user", content: `message ${i + 1}` }));
    await ciq.sessions.appendMany(session.id, events);
    const recorder = recordingFetch();
    const client = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, fetch: recorder.fetch });
    const seqs = [];
    for await (const event of client.sessions.iterEvents(session.id, { limit: 3 })) seqs.push(event.seq);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.ok(recorder.requests.length >= 4, `10 events at 3 a page take at least 4 pages, got ${recorder.requests.length}`);
    // Breaking out of the loop stops paging.
    const before = recorder.requests.length;
    for await (const event of client.sessions.iterEvents(session.id, { limit: 3 })) {
      assert.equal(event.seq, 1);
      break;
    }
    assert.equal(recorder.requests.length, before + 1);
  });

  test("404 session_not_found", async () => {
    const missing = "00000000-0000-4000-8000-000000000000";
    for (const call of [
      () => ciq.sessions.get(missing),
      () => ciq.sessions.events(missing),
      () => ciq.sessions.append(missing, { author: "user", content: "hi" }),
      () => ciq.sessions.patchState(missing, { a: 1 }),
      () => ciq.sessions.delete(missing),
    ]) {
      await assert.rejects(call(), (err) => {
        assert.ok(err instanceof ContextIQError);
        assert.equal(err.name, "ContextIQError");
        assert.equal(err.status, 404);
        assert.equal(err.code, "session_not_found");
        assert.equal(err.type, "urn:contextiq:problem:session_not_found");
        assert.equal(err.title, "Session not found");
        assert.ok(err.detail.length > 0);
        assert.equal(err.field, undefined);
        assert.equal(err.retryAfter, undefined);
        assert.ok(err.correlationId, "the server's X-Correlation-ID is kept");
        assert.match(err.message, /404 session_not_found/);
        return true;
      });
    }
  });

  test("422 validation_failed names the field", async () => {
    await assert.rejects(ciq.sessions.create({ user_id: "" }), (err) => {
      assert.ok(err instanceof ContextIQError);
      assert.equal(err.status, 422);
      assert.equal(err.code, "validation_failed");
      assert.equal(err.field, "user_id");
      return true;
    });
    await assert.rejects(ciq.sessions.create({ user_id: "u1", scope: { user_id: "u2" } }), (err) => {
      assert.equal(err.status, 422);
      assert.equal(err.code, "validation_failed");
      assert.ok(err.field, "a field is named");
      return true;
    });
    await assert.rejects(ciq.sessions.list({ limit: 0 }), (err) => {
      assert.equal(err.status, 422);
      assert.equal(err.field, "limit");
      return true;
    });
    const session = await ciq.sessions.create({ user_id: unique("bad") });
    await assert.rejects(ciq.sessions.append(session.id, { author: "user", role: "robot", content: "x" }), (err) => {
      assert.equal(err.status, 422);
      assert.match(err.field ?? "", /role/);
      return true;
    });
    await assert.rejects(ciq.sessions.appendMany(session.id, []), (err) => {
      assert.equal(err.status, 422);
      assert.match(err.field ?? "", /events/);
      return true;
    });
  });
});
