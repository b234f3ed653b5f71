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

describe("memories", () => {
  test("create, get, update, revisions, restore, delete, purge", async () => {
    const scope = { user_id: unique("mem") };
    const memory = await ciq.memories.create({
      scope,
      fact: "Allergic to peanuts",
      topic: "USER_PERSONAL_INFO",
      metadata: { source: "onboarding" },
      ttl_seconds: 31536000,
    });
    assert.equal(memory.fact, "Allergic to peanuts");
    assert.equal(memory.topic, "USER_PERSONAL_INFO");
    assert.deepEqual(memory.scope, scope);
    assert.deepEqual(memory.metadata, { source: "onboarding" });
    assert.equal(memory.confidence, 1);
    assert.ok(memory.expires_at);

    assert.deepEqual(await ciq.memories.get(memory.id), memory);

    const updated = await ciq.memories.update(memory.id, { fact: "Allergic to peanuts and cashews", confidence: 0.9 });
    assert.equal(updated.fact, "Allergic to peanuts and cashews");
    assert.equal(updated.confidence, 0.9);
    const cleared = await ciq.memories.update(memory.id, { topic: null, expires_at: null });
    assert.equal(cleared.topic ?? null, null);
    assert.equal(cleared.expires_at ?? null, null);

    const { revisions } = await ciq.memories.revisions(memory.id);
    assert.deepEqual(revisions.map((r) => r.action), ["created", "updated", "updated"]);
    assert.ok(revisions.every((r) => r.memory_id === memory.id && r.actor.startsWith("key:")));

    // Restore the first revision, by id or by body.
    const restored = await ciq.memories.restore(memory.id, revisions[0].id);
    assert.equal(restored.fact, "Allergic to peanuts");
    assert.equal(restored.topic, "USER_PERSONAL_INFO");
    const again = await ciq.memories.restore(memory.id, { revision_id: revisions[1].id });
    assert.equal(again.fact, "Allergic to peanuts and cashews");

    // Delete: gone, history kept, restorable.
    await ciq.memories.delete(memory.id);
    await assert.rejects(ciq.memories.get(memory.id), (err) => err instanceof ContextIQError && err.status === 404 && err.code === "memory_not_found");
    const history = await ciq.memories.revisions(memory.id);
    assert.equal(history.revisions.at(-1).action, "deleted");
    const back = await ciq.memories.restore(memory.id, revisions[0].id);
    assert.equal(back.fact, "Allergic to peanuts");
    assert.equal((await ciq.memories.get(memory.id)).fact, "Allergic to peanuts");

    // Purge: erased with its history.
    await ciq.memories.delete(memory.id, { purge: true });
    await assert.rejects(ciq.memories.revisions(memory.id), (err) => err.status === 404);
    await assert.rejects(ciq.memories.restore(memory.id, revisions[0].id), (err) => err.status === 404);
  });

  test("list filters and iter over more than two pages", async () => {
    const scope = { user_id: unique("pages") };
    const ids = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await ciq.memories.create({ scope, fact: `Fact number ${i}`, topic: i % 2 ? "ODD" : "EVEN" })).id);
    }
    const first = await ciq.memories.list({ scope, limit: 2 });
    assert.equal(first.memories.length, 2);
    assert.ok(first.next_cursor);

    const recorder = recordingFetch();
    const client = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, fetch: recorder.fetch });
    const seen = [];
    for await (const memory of client.memories.iter({ scope, limit: 2 })) seen.push(memory.id);
    assert.deepEqual(seen, ids.slice().reverse(), "every memory, newest first");
    assert.equal(recorder.requests.length, 3, "5 memories at 2 a page are 3 pages");
    assert.deepEqual(JSON.parse(recorder.requests[0].query.scope), scope, "the scope is sent as JSON");

    const odd = [];
    for await (const memory of ciq.memories.iter({ scope, topic: "ODD", limit: 1 })) odd.push(memory.fact);
    assert.deepEqual(odd, ["Fact number 3", "Fact number 1"]);

    const future = await ciq.memories.list({ scope, created_after: new Date(Date.now() + 3_600_000) });
    assert.deepEqual(future.memories, []);
    const past = await ciq.memories.list({ scope, created_before: new Date(Date.now() + 3_600_000).toISOString(), updated_after: "2000-01-01T00:00:00Z", updated_before: new Date(Date.now() + 3_600_000) });
    assert.equal(past.memories.length, 5);
  });

  test("search ranks within exactly one scope", async () => {
    const scope = { user_id: unique("search") };
    await ciq.memories.create({ scope, fact: "Allergic to peanuts", topic: "USER_PERSONAL_INFO" });
    await ciq.memories.create({ scope, fact: "Prefers window seats on flights", topic: "USER_PREFERENCES" });
    await ciq.memories.create({ scope, fact: "Works as a nurse in Porto", topic: "USER_PERSONAL_INFO" });
    await ciq.memories.create({ scope: { user_id: unique("other") }, fact: "Allergic to shellfish" });

    const { results } = await ciq.memories.search({ scope, search_query: "what food allergies does the user have?", top_k: 5 });
    assert.ok(results.length >= 1);
    assert.equal(results[0].memory.fact, "Allergic to peanuts");
    assert.ok(results.every((r) => r.memory.scope.user_id === scope.user_id), "only the scope's memories");
    assert.ok(results.every((r) => r.score >= 0 && r.score <= 1));
    for (let i = 1; i < results.length; i++) assert.ok(results[i - 1].score >= results[i].score, "best first");

    const filtered = await ciq.memories.search({ scope, search_query: "seat", filter: { topic: "USER_PREFERENCES" } });
    assert.deepEqual(filtered.results.map((r) => r.memory.fact), ["Prefers window seats on flights"]);
    const one = await ciq.memories.search({ scope, search_query: "Porto", top_k: 1 });
    assert.equal(one.results.length, 1);

    await assert.rejects(ciq.memories.search({ scope, search_query: "x", top_k: 0 }), (err) => {
      assert.equal(err.status, 422);
      assert.equal(err.code, "validation_failed");
      assert.equal(err.field, "top_k");
      return true;
    });
  });

  test("generate from inline events, then jobs.wait", async () => {
    const job = await ciq.memories.generate({
      source_type: "events",
      events: [{ author: "user", content: "I live in Lisbon" }],
      scope: { user_id: "u9" },
    });
    assert.equal(job.status, "pending");
    assert.equal(job.source_type, "events");
    assert.deepEqual(job.scope, { user_id: "u9" });
    const polled = await ciq.jobs.get(job.id);
    assert.equal(polled.id, job.id);

    const done = await ciq.jobs.wait(job.id, { pollIntervalMs: 100, maxWaitMs: 60_000 });
    assert.equal(done.status, "completed", done.error ?? "");
    assert.equal(done.events_processed, 1);
    assert.equal(done.counts.added, 1);
    assert.equal(done.memories_added.length, 1);
    assert.ok(done.finished_at);
    const memory = await ciq.memories.get(done.memories_added[0]);
    assert.match(memory.fact, /Lisbon/);
    assert.deepEqual(memory.scope, { user_id: "u9" });

    const { results } = await ciq.memories.search({ scope: { user_id: "u9" }, search_query: "Where does the user live?" });
    assert.match(results[0].memory.fact, /Lisbon/);

    const { revisions } = await ciq.memories.revisions(memory.id);
    assert.equal(revisions[0].job_id, job.id);
  });

  test("generate from a session, and create with consolidate", async () => {
    const user = unique("gen");
    const session = await ciq.sessions.create({ user_id: user });
    await ciq.sessions.appendMany(session.id, [
      { author: "user", role: "user", content: "I am vegetarian and I love coffee." },
      { author: "agent", role: "assistant", content: "Noted." },
      { author: "user", role: "user", content: "My favourite colour is blue." },
    ]);
    const job = await ciq.memories.generate({
      source_type: "session",
      source_reference: session.id,
      config: { extractor: "rules", topics: ["USER_PREFERENCES", "USER_PERSONAL_INFO", { name: "DIET", description: "what the user eats" }] },
    });
    const done = await ciq.jobs.wait(job.id, { pollIntervalMs: 100 });
    assert.equal(done.status, "completed", done.error ?? "");
    assert.ok(done.counts.added >= 2, JSON.stringify(done.counts));
    assert.equal(done.source_reference, session.id);

    // A fact through consolidation: 202 with the job; the same fact again changes nothing.
    const consolidating = await ciq.memories.create({ scope: { user_id: user }, fact: "My favourite colour is green now.", consolidate: true });
    assert.ok(["pending", "running", "completed"].includes(consolidating.status));
    const finished = await ciq.jobs.wait(consolidating.id, { pollIntervalMs: 100 });
    assert.equal(finished.status, "completed", finished.error ?? "");
    assert.equal(finished.counts.added + finished.counts.updated + finished.counts.unchanged, 1, JSON.stringify(finished.counts));

    const direct = await ciq.memories.generate({ source_type: "memories", scope: { user_id: user }, memories: [{ fact: "Has a dog named Rex", topic: "USER_PERSONAL_INFO" }] });
    const directDone = await ciq.jobs.wait(direct.id, { pollIntervalMs: 100 });
    assert.equal(directDone.counts.added, 1);
  });

  test("said_at: filters, recency weight, update", async () => {
    const scope = { user_id: unique("said") };
    const old = await ciq.memories.create({ scope, fact: "User's favourite tea is green tea", said_at: "2020-03-01T08:00:00Z" });
    assert.equal(old.said_at, "2020-03-01T08:00:00Z");
    const recent = await ciq.memories.create({ scope, fact: "User's favourite tea is black tea" });
    assert.equal(recent.said_at, recent.created_at);
    const before = await ciq.memories.list({ scope, said_before: new Date("2021-01-01T00:00:00Z") });
    assert.deepEqual(before.memories.map((m) => m.id), [old.id]);
    const later = await ciq.memories.search({ scope, search_query: "green tea", filter: { said_after: "2021-01-01T00:00:00Z" } });
    assert.deepEqual(later.results.map((r) => r.memory.id), [recent.id]);
    const relevant = await ciq.memories.search({ scope, search_query: "green tea" });
    assert.equal(relevant.results[0].memory.id, old.id);
    const weighed = await ciq.memories.search({ scope, search_query: "green tea", recency_weight: 0.9, recency_half_life_days: 30 });
    assert.deepEqual(weighed.results.map((r) => r.memory.id), [recent.id, old.id]);
    const moved = await ciq.memories.update(old.id, { said_at: new Date("2019-05-05T05:05:05Z") });
    assert.equal(moved.said_at, "2019-05-05T05:05:05Z");
    await assert.rejects(
      ciq.memories.search({ scope, search_query: "tea", recency_weight: 2 }),
      (err) => err.status === 422 && err.field === "recency_weight",
    );
  });

  test("errors: 404 memory_not_found, job_not_found; 422 with field", async () => {
    const missing = "00000000-0000-4000-8000-000000000000";
    await assert.rejects(ciq.memories.get(missing), (err) => err.status === 404 && err.code === "memory_not_found");
    await assert.rejects(ciq.memories.update(missing, { fact: "x" }), (err) => err.status === 404 && err.code === "memory_not_found");
    await assert.rejects(ciq.memories.delete(missing), (err) => err.status === 404 && err.code === "memory_not_found");
    await assert.rejects(ciq.jobs.get(missing), (err) => err.status === 404 && err.code === "job_not_found");
    await assert.rejects(ciq.memories.create({ scope: {}, fact: "x" }), (err) => err.status === 422 && err.field === "scope");
    await assert.rejects(ciq.memories.create({ scope: { user_id: "u1" }, fact: "x", confidence: 2 }), (err) => err.status === 422 && err.field === "confidence");
    await assert.rejects(ciq.memories.list({ scope: { user_id: "u1" }, limit: 500 }), (err) => err.status === 422 && err.field === "limit");
    await assert.rejects(ciq.memories.generate({ source_type: "events", events: [{ content: "hi" }] }), (err) => err.status === 422 && err.field === "scope");
  });
});
