// Retries against real servers: one limited to 1 request per second (burst 1), one whose
// requests time out while its database is locked.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { ContextIQ, ContextIQError } from "../dist/index.js";
import { recordingFetch, startServer } from "./helpers.mjs";

let server;

/** Waits until the key's bucket is full again (1 s refills the one token). */
const refill = () => new Promise((r) => setTimeout(r, 1100));

describe("retries on 429", () => {
  before(async () => {
    server = await startServer({ RATE_LIMIT_PER_SECOND: "1", RATE_LIMIT_BURST: "1" });
  });
  after(async () => {
    await server?.stop();
  });

  test("maxRetries 0 throws rate_limited with retryAfter", async () => {
    await refill();
    const client = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, maxRetries: 0 });
    await client.keys.list();
    await assert.rejects(client.keys.list(), (err) => {
      assert.ok(err instanceof ContextIQError);
      assert.equal(err.status, 429);
      assert.equal(err.code, "rate_limited");
      assert.equal(err.title, "Too many requests");
      assert.equal(err.retryAfter, 1);
      return true;
    });
    // And per call.
    await refill();
    const retrying = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey });
    await retrying.sessions.list();
    await assert.rejects(retrying.sessions.list({}, { maxRetries: 0 }), (err) => err.code === "rate_limited");
  });

  test("a burst of calls succeeds, each retry waiting Retry-After", async () => {
    await refill();
    const recorder = recordingFetch();
    const client = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey, fetch: recorder.fetch, maxRetries: 6 });
    const started = Date.now();
    const calls = [
      client.sessions.create({ user_id: "burst-1" }, { headers: { "x-test-call": "0" } }),
      client.sessions.create({ user_id: "burst-2" }, { headers: { "x-test-call": "1" } }),
      client.sessions.list({ user_id: "burst-1" }, { headers: { "x-test-call": "2" } }),
    ];
    const results = await Promise.all(calls);
    const elapsed = Date.now() - started;
    assert.equal(results[0].user_id, "burst-1");
    assert.equal(results[1].user_id, "burst-2");
    assert.ok(Array.isArray(results[2].sessions));

    const limited = recorder.requests.filter((r) => r.status === 429);
    assert.ok(limited.length >= 2, `at least two calls were limited (${limited.length})`);
    assert.ok(elapsed >= 2000, `three calls at 1/s take two seconds or more (${elapsed} ms)`);
    // Each retry came no sooner than the Retry-After (1 s) of the 429 before it.
    for (const call of ["0", "1", "2"]) {
      const attempts = recorder.requests.filter((r) => r.headers["x-test-call"] === call);
      assert.equal(attempts.at(-1).status < 300, true, `call ${call} ends in a success`);
      for (let i = 1; i < attempts.length; i++) {
        assert.equal(attempts[i - 1].status, 429);
        const waited = attempts[i].sentAt - attempts[i - 1].receivedAt;
        assert.ok(waited >= 990, `call ${call} retried after ${waited} ms, before Retry-After`);
      }
    }
    // Two creates: no request was applied twice.
    await refill();
    const listed = await client.sessions.list({ user_id: "burst-2" });
    assert.equal(listed.sessions.length, 1);
  });

  test("sequential calls with the default maxRetries", async () => {
    await refill();
    const client = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey });
    const started = Date.now();
    for (let i = 0; i < 3; i++) assert.equal((await client.health()).status, "ok");
    // The service endpoints are not limited; the API is.
    const session = await client.sessions.create({ user_id: "seq" });
    await client.sessions.append(session.id, { author: "user", content: "one" });
    await client.sessions.append(session.id, { author: "user", content: "two" });
    const events = await client.sessions.events(session.id);
    assert.deepEqual(events.events.map((e) => e.content), ["one", "two"]);
    assert.ok(Date.now() - started >= 2500, "four limited calls at 1/s");
  });
});

// A 503 from a real server: requests time out (REQUEST_TIMEOUT_SECONDS=1) while another process
// holds the SQLite database locked. The server says a write it timed out on "may still have been
// applied", so the client retries idempotent calls only.
describe("retries on 503", () => {
  let slow;
  let python;

  before(async () => {
    python = spawnSync("python3", ["-c", "import sqlite3"]).status === 0;
    if (python) slow = await startServer({ REQUEST_TIMEOUT_SECONDS: "1" });
  });
  after(async () => {
    await slow?.stop();
  });

  /** Holds an exclusive lock on the server's database for `ms`; resolves once it is held, with `released`. */
  async function lockDatabase(ms) {
    const holder = spawn("python3", [
      "-c",
      "import sqlite3, sys, time\n" +
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)\n" +
        "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True)\n" +
        "time.sleep(float(sys.argv[2])); c.execute('COMMIT')\n",
      join(slow.dataDir, "contextiq.db"),
      String(ms / 1000),
    ], { stdio: ["ignore", "pipe", "inherit"] });
    const released = new Promise((resolve) => holder.once("exit", resolve));
    await new Promise((resolve, reject) => {
      holder.stdout.on("data", (chunk) => chunk.toString().includes("locked") && resolve());
      holder.once("exit", (code) => reject(new Error(`the lock holder exited with ${code}`)));
    });
    return { released };
  }

  test("an idempotent call is retried until it succeeds; a non-idempotent one is not sent twice", async (t) => {
    if (!python) {
      t.skip("python3 with sqlite3 is needed to lock the database");
      return;
    }
    const recorder = recordingFetch();
    const client = new ContextIQ({ baseUrl: slow.baseUrl, apiKey: slow.adminKey, fetch: recorder.fetch, retryBaseDelayMs: 500, maxRetries: 6 });
    const session = await client.sessions.create({ user_id: "locked" });

    const { released } = await lockDatabase(2500);
    const [append, patch] = await Promise.allSettled([
      client.sessions.append(session.id, { author: "user", content: "during the lock" }, { headers: { "x-test-call": "append" } }),
      client.sessions.patchState(session.id, { step: 2 }, { headers: { "x-test-call": "patch" } }),
    ]);
    await released;

    assert.equal(append.status, "rejected");
    assert.ok(append.reason instanceof ContextIQError);
    assert.equal(append.reason.status, 503);
    assert.equal(append.reason.code, "timeout");
    assert.equal(recorder.requests.filter((r) => r.headers["x-test-call"] === "append").length, 1, "the POST was sent once");

    assert.equal(patch.status, "fulfilled", String(patch.reason));
    assert.deepEqual(patch.value.state, { step: 2 });
    const patches = recorder.requests.filter((r) => r.headers["x-test-call"] === "patch");
    assert.ok(patches.length >= 2, `the PATCH was retried (${patches.length} attempts)`);
    assert.equal(patches[0].status, 503);
    assert.equal(patches.at(-1).status, 200);

    // The timed-out append was applied after all, once: retrying it would have doubled it.
    const deadline = Date.now() + 10_000;
    let events;
    do {
      events = (await client.sessions.events(session.id)).events;
      if (events.length) break;
      await new Promise((r) => setTimeout(r, 100));
    } while (Date.now() < deadline);
    assert.deepEqual(events.map((e) => e.content), ["during the lock"]);
  });
});
