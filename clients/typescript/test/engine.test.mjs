import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ContextIQ, ContextIQError } from "../dist/index.js";
import { recordingFetch, startServer, unique } from "./helpers.mjs";

let server;

before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

describe("engine", () => {
  test("engine A and the default engine never see each other's data", async () => {
    const user = unique("eng");
    const engineA = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, engine: "A" });
    const base = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey });
    assert.equal(engineA.engine, "A");
    assert.equal(base.engine, undefined);

    // Sessions.
    const inA = await engineA.sessions.create({ user_id: user, state: { engine: "A" } });
    const inDefault = await base.sessions.create({ user_id: user, state: { engine: "default" } });
    assert.deepEqual((await engineA.sessions.list({ user_id: user })).sessions.map((s) => s.id), [inA.id]);
    assert.deepEqual((await base.sessions.list({ user_id: user })).sessions.map((s) => s.id), [inDefault.id]);
    await assert.rejects(base.sessions.get(inA.id), (err) => err instanceof ContextIQError && err.status === 404 && err.code === "session_not_found");
    await assert.rejects(engineA.sessions.get(inDefault.id), (err) => err.status === 404 && err.code === "session_not_found");
    await assert.rejects(base.sessions.append(inA.id, { author: "user", content: "hi" }), (err) => err.status === 404);

    // Memories and search.
    const scope = { user_id: user };
    const memA = await engineA.memories.create({ scope, fact: "Speaks Portuguese" });
    assert.deepEqual((await base.memories.list({ scope })).memories, []);
    assert.deepEqual((await base.memories.search({ scope, search_query: "Portuguese" })).results, []);
    await assert.rejects(base.memories.get(memA.id), (err) => err.status === 404 && err.code === "memory_not_found");
    assert.equal((await engineA.memories.search({ scope, search_query: "Portuguese" })).results[0].memory.id, memA.id);

    // Jobs.
    const job = await engineA.memories.generate({ source_type: "events", scope, events: [{ content: "I live in Lisbon" }] });
    await assert.rejects(base.jobs.get(job.id), (err) => err.status === 404 && err.code === "job_not_found");
    const done = await engineA.jobs.wait(job.id, { pollIntervalMs: 100 });
    assert.equal(done.status, "completed");
    assert.equal((await base.memories.list({ scope })).memories.length, 0);
    assert.equal((await engineA.memories.list({ scope })).memories.length, 2);

    // Per call, and withEngine: `default` is the header-less engine.
    assert.deepEqual((await engineA.sessions.list({ user_id: user }, { engine: null })).sessions.map((s) => s.id), [inDefault.id]);
    assert.deepEqual((await engineA.sessions.list({ user_id: user }, { engine: "default" })).sessions.map((s) => s.id), [inDefault.id]);
    assert.deepEqual((await base.sessions.list({ user_id: user }, { engine: "A" })).sessions.map((s) => s.id), [inA.id]);
    const b = base.withEngine("B");
    assert.equal(b.engine, "B");
    assert.deepEqual((await b.sessions.list({ user_id: user })).sessions, []);
    assert.deepEqual((await engineA.withEngine(null).sessions.list({ user_id: user })).sessions.map((s) => s.id), [inDefault.id]);

    // The header goes on sessions, memories and jobs calls only: keys belong to the org.
    const recorder = recordingFetch();
    const watched = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, engine: "A", fetch: recorder.fetch });
    await watched.sessions.get(inA.id);
    await watched.memories.get(memA.id);
    await watched.jobs.get(job.id);
    await watched.keys.list();
    await watched.health();
    await watched.sessions.list({ user_id: user }, { engine: null });
    assert.deepEqual(
      recorder.requests.map((r) => [r.path.split("/").slice(0, 4).join("/"), r.headers["x-engine-id"]]),
      [
        ["/api/v1/sessions", "A"],
        ["/api/v1/memories", "A"],
        ["/api/v1/jobs", "A"],
        ["/api/v1/keys", undefined],
        ["/health", undefined],
        ["/api/v1/sessions", undefined],
      ],
    );
  });

  test("an invalid engine is a 422 naming X-Engine-Id", async () => {
    const bad = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, engine: "bad engine!" });
    await assert.rejects(bad.sessions.list(), (err) => {
      assert.ok(err instanceof ContextIQError);
      assert.equal(err.status, 422);
      assert.equal(err.code, "validation_failed");
      assert.equal(err.field, "X-Engine-Id");
      return true;
    });
    const long = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, engine: "x".repeat(64) });
    await assert.rejects(long.memories.list({ scope: { user_id: "u1" } }), (err) => err.status === 422 && err.field === "X-Engine-Id");
    // 63 characters is the longest engine.
    const longest = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, engine: "x".repeat(63) });
    assert.deepEqual((await longest.sessions.list()).sessions, []);
  });
});
