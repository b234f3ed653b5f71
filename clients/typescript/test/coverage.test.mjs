// The client against the server's contract: every in-scope operation of /openapi.json has a
// row in OPERATIONS and a client method that sends it, and nothing else is claimed.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ContextIQ, OPERATIONS } from "../dist/index.js";
import { recordingFetch, startServer, unique } from "./helpers.mjs";

let server;
let openapi;

before(async () => {
  server = await startServer();
  const response = await fetch(`${server.baseUrl}/openapi.json`);
  assert.equal(response.status, 200);
  openapi = await response.json();
});
after(async () => {
  await server?.stop();
});

const SERVICE_PATHS = new Set(["/health", "/health/ready", "/metrics"]);
const METHODS = ["get", "post", "put", "patch", "delete", "head", "options", "trace"];
const inScope = (path) => path.startsWith("/api/v1") || SERVICE_PATHS.has(path);
/** Client members that send no request of their own. */
const HELPERS = new Set(["withEngine", "engine"]);

function documentedOperations() {
  const found = [];
  for (const [path, item] of Object.entries(openapi.paths)) {
    for (const method of METHODS) {
      if (item[method]) found.push({ method: method.toUpperCase(), path, operationId: item[method].operationId, spec: item[method] });
    }
  }
  return found;
}

const key = (op) => `${op.method} ${op.path}`;

/** The members of an object's class that are functions (its methods), by name. */
function methodsOf(object) {
  const proto = Object.getPrototypeOf(object);
  return Object.getOwnPropertyNames(proto).filter((name) => name !== "constructor" && typeof object[name] === "function");
}

function resolveMethod(client, name) {
  const parts = name.split(".");
  const owner = parts.length === 2 ? client[parts[0]] : client;
  return owner?.[parts.at(-1)];
}

describe("coverage of /openapi.json", () => {
  test("every in-scope operation is in OPERATIONS, and every row is in the document", () => {
    const documented = documentedOperations().filter((op) => inScope(op.path));
    const documentedKeys = new Set(documented.map(key));
    const tableKeys = new Set(OPERATIONS.map(key));
    const missing = [...documentedKeys].filter((k) => !tableKeys.has(k));
    const extra = [...tableKeys].filter((k) => !documentedKeys.has(k));
    assert.deepEqual(missing, [], "operations of /openapi.json without a client method");
    assert.deepEqual(extra, [], "OPERATIONS rows that /openapi.json does not have");
    assert.equal(OPERATIONS.length, tableKeys.size, "one row per operation");
    assert.equal(documented.length, 32);
    for (const op of documented) {
      const row = OPERATIONS.find((r) => key(r) === key(op));
      assert.equal(row.operationId, op.operationId, key(op));
      // Open endpoints are the ones the document says need no credentials.
      assert.equal(row.public, Array.isArray(op.spec.security) && op.spec.security.length === 0, `${key(op)} public`);
    }
  });

  test("the Agent Engine surface is out of scope", () => {
    const agentEngine = documentedOperations().filter((op) => op.path.startsWith("/v1beta1/"));
    assert.ok(agentEngine.length > 0);
    assert.ok(OPERATIONS.every((row) => !row.path.startsWith("/v1beta1/")));
    // Nothing else outside /api/v1 and the service endpoints is left uncovered.
    const other = documentedOperations().filter((op) => !inScope(op.path) && !op.path.startsWith("/v1beta1/"));
    assert.deepEqual(other.map(key), []);
  });

  test("every row names client methods, and every client method is in a row", () => {
    const client = new ContextIQ({ baseUrl: server.baseUrl });
    const named = new Set(OPERATIONS.flatMap((row) => row.sdk));
    for (const name of named) assert.equal(typeof resolveMethod(client, name), "function", `${name} is a client method`);
    const methods = [];
    for (const group of ["sessions", "memories", "jobs", "keys"]) {
      for (const name of methodsOf(client[group])) methods.push(`${group}.${name}`);
    }
    for (const name of methodsOf(client)) if (!HELPERS.has(name)) methods.push(name);
    assert.deepEqual(methods.filter((m) => !named.has(m)), [], "client methods without a row");
    assert.deepEqual([...named].filter((m) => !methods.includes(m)), [], "rows naming no client method");
    const expected = [
      "sessions.create", "sessions.get", "sessions.list", "sessions.iter", "sessions.delete", "sessions.append",
      "sessions.appendMany", "sessions.events", "sessions.iterEvents", "sessions.patchState",
      "sessions.state", "sessions.fork", "sessions.rewind",
      "sessions.compact", "sessions.context", "sessions.streamEvents", "jobs.stream",
      "memories.create", "memories.get", "memories.list", "memories.iter", "memories.update", "memories.delete",
      "memories.revisions", "memories.restore", "memories.search", "memories.profile", "memories.generate",
      "jobs.get", "jobs.wait", "keys.create", "keys.list", "keys.get", "keys.revoke", "health", "ready", "metrics",
    ];
    assert.deepEqual(methods.slice().sort(), expected.slice().sort());
  });

  test("the engine header applies exactly to the sessions, memories and jobs routes", () => {
    for (const row of OPERATIONS) {
      const engineRoute = /^\/api\/v1\/(sessions|memories|jobs)(\/|$)/.test(row.path);
      assert.equal(row.engine, engineRoute, key(row));
    }
  });

  test("every operation, through every client method, against the server", async () => {
    const recorder = recordingFetch();
    const ciq = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, fetch: recorder.fetch });
    /** Each client method, called once: its name and the requests it sent. */
    const sent = new Map();
    const run = async (name, fn) => {
      const from = recorder.requests.length;
      const value = await fn();
      sent.set(name, recorder.requests.slice(from));
      return value;
    };
    const user = unique("cov");
    const scope = { user_id: user };

    assert.equal((await run("health", () => ciq.health())).status, "ok");
    assert.equal((await run("ready", () => ciq.ready())).status, "ready");
    const metrics = await run("metrics", () => ciq.metrics());
    assert.match(metrics, /^# (TYPE|HELP) /m);

    const session = await run("sessions.create", () => ciq.sessions.create({ user_id: user }));
    await run("sessions.append", () => ciq.sessions.append(session.id, { author: "user", content: "I live in Lisbon" }));
    await run("sessions.appendMany", () => ciq.sessions.appendMany(session.id, [{ author: "user", content: "I love coffee" }]));
    assert.equal((await run("sessions.get", () => ciq.sessions.get(session.id))).event_count, 2);
    assert.equal((await run("sessions.list", () => ciq.sessions.list({ user_id: user }))).sessions.length, 1);
    await run("sessions.iter", async () => {
      for await (const s of ciq.sessions.iter({ user_id: user })) assert.equal(s.id, session.id);
    });
    assert.equal((await run("sessions.events", () => ciq.sessions.events(session.id))).events.length, 2);
    await run("sessions.iterEvents", async () => {
      const all = [];
      for await (const e of ciq.sessions.iterEvents(session.id, { limit: 1 })) all.push(e);
      assert.equal(all.length, 2);
    });
    assert.deepEqual((await run("sessions.patchState", () => ciq.sessions.patchState(session.id, { a: 1 }))).state, { a: 1 });
    assert.deepEqual(await run("sessions.state", () => ciq.sessions.state(session.id, { at_seq: 1 })), { session_id: session.id, at_seq: 1, state: {} });
    const fork = await run("sessions.fork", () => ciq.sessions.fork(session.id, { at_seq: 2 }));
    assert.deepEqual(fork.forked_from, { session_id: session.id, seq: 2 });
    const rewound = await run("sessions.rewind", () => ciq.sessions.rewind(fork.id, { to_seq: 1 }));
    assert.equal(rewound.event_count, 3);

    const memory = await run("memories.create", () => ciq.memories.create({ scope, fact: "Has a cat" }));
    assert.equal((await run("memories.get", () => ciq.memories.get(memory.id))).fact, "Has a cat");
    assert.equal((await run("memories.list", () => ciq.memories.list({ scope }))).memories.length, 1);
    await run("memories.iter", async () => {
      for await (const m of ciq.memories.iter({ scope })) assert.equal(m.id, memory.id);
    });
    assert.equal((await run("memories.update", () => ciq.memories.update(memory.id, { fact: "Has two cats" }))).fact, "Has two cats");
    const { revisions } = await run("memories.revisions", () => ciq.memories.revisions(memory.id));
    assert.equal((await run("memories.restore", () => ciq.memories.restore(memory.id, revisions[0].id))).fact, "Has a cat");
    assert.equal((await run("memories.search", () => ciq.memories.search({ scope, search_query: "cat" }))).results.length, 1);
    const home = await ciq.memories.create({ scope, fact: "User lives in Lisbon" });
    const profile = await run("memories.profile", () => ciq.memories.profile(scope));
    assert.deepEqual(profile.attributes.map((a) => [a.attribute, a.value, a.memory_id]), [["residence", "Lisbon", home.id]]);
    assert.deepEqual(profile.scope, scope);
    const job = await run("memories.generate", () => ciq.memories.generate({ source_type: "session", source_reference: session.id }));
    assert.equal((await run("jobs.get", () => ciq.jobs.get(job.id))).id, job.id);
    assert.equal((await run("jobs.wait", () => ciq.jobs.wait(job.id, { pollIntervalMs: 100 }))).status, "completed");
    const compacting = await run("sessions.compact", () => ciq.sessions.compact(session.id, { keep_recent_events: 1 }));
    await run("jobs.stream", async () => {
      const seen = [];
      for await (const update of ciq.jobs.stream(compacting.id)) seen.push(update.status);
      assert.equal(seen.at(-1), "completed");
    });
    assert.ok((await run("sessions.context", () => ciq.sessions.context(session.id, { budget_tokens: 500 }))).total_tokens <= 500);
    await run("sessions.streamEvents", async () => {
      for await (const event of ciq.sessions.streamEvents(session.id, { after_seq: 0 })) {
        assert.equal(event.seq, 1);
        break;
      }
    });
    await run("memories.delete", () => ciq.memories.delete(memory.id, { purge: true }));
    await run("sessions.delete", () => ciq.sessions.delete(session.id));

    const created = await run("keys.create", () => ciq.keys.create({ name: unique("cov"), permissions: ["SESSION_READ"] }));
    assert.ok((await run("keys.list", () => ciq.keys.list())).keys.some((k) => k.id === created.id));
    assert.equal((await run("keys.get", () => ciq.keys.get(created.id))).id, created.id);
    assert.ok((await run("keys.revoke", () => ciq.keys.revoke(created.id))).revoked_at);

    // Each method sent its row's operation, and only it; every operation was sent.
    const matches = (row, request) =>
      row.method === request.method && new RegExp(`^${row.path.replace(/\{\w+\}/g, "[^/]+")}$`).test(request.path);
    const reached = new Set();
    for (const row of OPERATIONS) {
      for (const name of row.sdk) {
        const requests = sent.get(name);
        assert.ok(requests && requests.length > 0, `${name} was called`);
        for (const request of requests) {
          assert.ok(matches(row, request), `${name} sent ${request.method} ${request.path}, not ${key(row)}`);
          assert.ok(request.status >= 200 && request.status < 300, `${name}: ${request.status}`);
        }
        reached.add(row.operationId);
      }
    }
    assert.equal(reached.size, OPERATIONS.length);
    assert.equal(sent.size, OPERATIONS.flatMap((row) => row.sdk).length);
  });
});
