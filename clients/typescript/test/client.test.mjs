// The client's own behaviour, on a scripted fetch: retries, backoff, timeouts, aborts, errors
// that are not problems, request building.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, test } from "node:test";

import { ContextIQ, ContextIQError, parseRetryAfter } from "../dist/index.js";
import { json, problem, scriptedFetch } from "./helpers.mjs";

const SESSION = { id: "s1", user_id: "u1", scope: { user_id: "u1" }, state: {}, metadata: {}, created_at: "t", updated_at: "t", event_count: 0 };
const fast = { baseUrl: "http://ciq.test", apiKey: "ck_test", retryBaseDelayMs: 5 };

describe("retries", () => {
  test("503 with Retry-After is retried after that many seconds", async () => {
    const { fetch, requests } = scriptedFetch([
      () => problem(503, "store_unavailable", {}, { "retry-after": "1" }),
      () => json(200, SESSION),
    ]);
    const client = new ContextIQ({ ...fast, fetch });
    const started = Date.now();
    const session = await client.sessions.get("s1");
    assert.equal(session.id, "s1");
    assert.equal(requests.length, 2);
    assert.ok(requests[1].at - requests[0].at >= 1000, "waited Retry-After");
    assert.ok(Date.now() - started < 3000);
  });

  test("a non-idempotent POST is retried on 429 and on 503 store_unavailable, not on 503 timeout", async () => {
    const created = { ...SESSION, events: [] };
    let script = scriptedFetch([() => problem(429, "rate_limited", {}, { "retry-after": "0" }), () => problem(503, "store_unavailable"), () => json(201, created)]);
    let client = new ContextIQ({ ...fast, fetch: script.fetch });
    assert.equal((await client.sessions.create({ user_id: "u1" })).id, "s1");
    assert.equal(script.requests.length, 3);

    script = scriptedFetch([() => problem(503, "timeout", {}, { "retry-after": "0" }), () => json(201, created)]);
    client = new ContextIQ({ ...fast, fetch: script.fetch });
    await assert.rejects(client.sessions.create({ user_id: "u1" }), (err) => err.status === 503 && err.code === "timeout" && err.retryAfter === 0);
    assert.equal(script.requests.length, 1, "a POST the server gave up on is not sent again");

    script = scriptedFetch([() => problem(503, "timeout", {}, { "retry-after": "0" }), () => json(200, SESSION)]);
    client = new ContextIQ({ ...fast, fetch: script.fetch });
    assert.equal((await client.sessions.get("s1")).id, "s1", "a GET is");
  });

  test("maxRetries bounds the attempts; 0 disables; per call overrides", async () => {
    let script = scriptedFetch([() => problem(429, "rate_limited", {}, { "retry-after": "0" })]);
    let client = new ContextIQ({ ...fast, fetch: script.fetch, maxRetries: 2 });
    await assert.rejects(client.keys.list(), (err) => err.code === "rate_limited");
    assert.equal(script.requests.length, 3);

    script = scriptedFetch([() => problem(429, "rate_limited", {}, { "retry-after": "0" })]);
    client = new ContextIQ({ ...fast, fetch: script.fetch, maxRetries: 0 });
    await assert.rejects(client.keys.list(), (err) => err.code === "rate_limited");
    assert.equal(script.requests.length, 1);

    script = scriptedFetch([() => problem(429, "rate_limited", {}, { "retry-after": "0" })]);
    client = new ContextIQ({ ...fast, fetch: script.fetch });
    await assert.rejects(client.keys.list({ maxRetries: 1 }), (err) => err.code === "rate_limited");
    assert.equal(script.requests.length, 2);
  });

  test("no Retry-After: exponential backoff", async () => {
    const script = scriptedFetch([() => problem(503, "shutting_down"), () => problem(503, "shutting_down"), () => problem(503, "shutting_down"), () => json(200, { keys: [] })]);
    const client = new ContextIQ({ ...fast, retryBaseDelayMs: 40, fetch: script.fetch });
    await client.keys.list();
    const gaps = script.requests.slice(1).map((r, i) => r.at - script.requests[i].at);
    // base * 2^n, jittered between half and all of it: >= 20, 40, 80 ms.
    assert.ok(gaps[0] >= 19 && gaps[1] >= 39 && gaps[2] >= 79, JSON.stringify(gaps));
  });

  test("a Retry-After longer than maxRetryDelayMs is thrown, not waited out", async () => {
    const script = scriptedFetch([() => problem(429, "rate_limited", {}, { "retry-after": "120" })]);
    const client = new ContextIQ({ ...fast, fetch: script.fetch, maxRetryDelayMs: 1000 });
    await assert.rejects(client.sessions.list(), (err) => err.retryAfter === 120);
    assert.equal(script.requests.length, 1);
  });

  test("other errors are not retried", async () => {
    for (const status of [400, 401, 403, 404, 409, 413, 415, 422, 500]) {
      const script = scriptedFetch([() => problem(status, `code_${status}`)]);
      const client = new ContextIQ({ ...fast, fetch: script.fetch });
      await assert.rejects(client.sessions.list(), (err) => err.status === status && err.code === `code_${status}`);
      assert.equal(script.requests.length, 1, `${status}`);
    }
  });

  test("network errors: retried for idempotent calls only", async () => {
    const refuse = () => Promise.reject(new TypeError("fetch failed"));
    let script = scriptedFetch([refuse, refuse, () => json(200, SESSION)]);
    let client = new ContextIQ({ ...fast, fetch: script.fetch });
    assert.equal((await client.sessions.get("s1")).id, "s1");
    assert.equal(script.requests.length, 3);

    for (const call of [
      (c) => c.sessions.create({ user_id: "u1" }),
      (c) => c.sessions.append("s1", { author: "user", content: "x" }),
      (c) => c.memories.generate({ source_type: "events", scope: { user_id: "u1" }, events: [{ content: "x" }] }),
      (c) => c.memories.restore("m1", "r1"),
      (c) => c.keys.create({ name: "k", permissions: ["SESSION_READ"] }),
    ]) {
      script = scriptedFetch([refuse, () => json(201, {})]);
      client = new ContextIQ({ ...fast, fetch: script.fetch });
      await assert.rejects(call(client), (err) => {
        assert.ok(err instanceof ContextIQError);
        assert.equal(err.status, 0);
        assert.equal(err.code, "network_error");
        assert.ok(err.cause instanceof TypeError);
        return true;
      });
      assert.equal(script.requests.length, 1);
    }

    // Search is a read: retried.
    script = scriptedFetch([refuse, () => json(200, { results: [] })]);
    client = new ContextIQ({ ...fast, fetch: script.fetch });
    assert.deepEqual(await client.memories.search({ scope: { user_id: "u1" }, search_query: "x" }), { results: [] });
  });

  test("a real refused connection is a network_error", async () => {
    const port = await new Promise((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port: free } = probe.address();
        probe.close(() => resolve(free));
      });
    });
    const client = new ContextIQ({ baseUrl: `http://127.0.0.1:${port}`, apiKey: "ck_x", maxRetries: 1, retryBaseDelayMs: 5 });
    await assert.rejects(client.health(), (err) => err instanceof ContextIQError && err.code === "network_error" && err.status === 0);
  });
});

describe("timeouts and aborts", () => {
  const hang = (_url, init) =>
    new Promise((_resolve, reject) => {
      init.signal.addEventListener("abort", () => reject(init.signal.reason ?? new DOMException("aborted", "AbortError")));
    });

  test("timeoutMs ends an attempt with code timeout; idempotent calls retry it", async () => {
    let script = scriptedFetch([hang]);
    let client = new ContextIQ({ ...fast, fetch: script.fetch, timeoutMs: 50, maxRetries: 1 });
    const started = Date.now();
    await assert.rejects(client.sessions.get("s1"), (err) => err instanceof ContextIQError && err.code === "timeout" && err.status === 0);
    assert.equal(script.requests.length, 2);
    assert.ok(Date.now() - started >= 100);

    script = scriptedFetch([hang]);
    client = new ContextIQ({ ...fast, fetch: script.fetch, timeoutMs: 50 });
    await assert.rejects(client.sessions.create({ user_id: "u1" }), (err) => err.code === "timeout");
    assert.equal(script.requests.length, 1);

    script = scriptedFetch([hang, () => json(200, SESSION)]);
    client = new ContextIQ({ ...fast, fetch: script.fetch });
    assert.equal((await client.sessions.get("s1", {}, { timeoutMs: 30 })).id, "s1");
  });

  test("the caller's signal aborts at once, with its reason, and stops retries", async () => {
    const script = scriptedFetch([hang]);
    const client = new ContextIQ({ ...fast, fetch: script.fetch });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    await assert.rejects(client.sessions.get("s1", {}, { signal: controller.signal }), (err) => err.name === "AbortError");
    assert.equal(script.requests.length, 1);

    const sleeping = scriptedFetch([() => problem(429, "rate_limited", {}, { "retry-after": "5" })]);
    const other = new ContextIQ({ ...fast, fetch: sleeping.fetch });
    const reason = new Error("stop");
    const aborter = new AbortController();
    setTimeout(() => aborter.abort(reason), 30);
    const started = Date.now();
    await assert.rejects(other.keys.list({ signal: aborter.signal }), (err) => err === reason);
    assert.ok(Date.now() - started < 2000, "the wait before a retry ends with the abort");

    await assert.rejects(other.keys.list({ signal: AbortSignal.abort() }), (err) => err.name === "AbortError");
  });
});

describe("answers that are not problems", () => {
  test("an error without a problem body is http_error", async () => {
    const script = scriptedFetch([() => new Response("<html>Bad gateway</html>", { status: 502, statusText: "Bad Gateway", headers: { "content-type": "text/html" } })]);
    const client = new ContextIQ({ ...fast, fetch: script.fetch });
    await assert.rejects(client.sessions.list(), (err) => {
      assert.ok(err instanceof ContextIQError);
      assert.equal(err.status, 502);
      assert.equal(err.code, "http_error");
      assert.equal(err.title, "Bad Gateway");
      assert.match(err.detail, /Bad gateway/);
      assert.equal(err.problem, undefined);
      return true;
    });
    const bodiless = scriptedFetch([() => new Response(null, { status: 431 })]);
    await assert.rejects(new ContextIQ({ ...fast, fetch: bodiless.fetch }).sessions.list(), (err) => err.status === 431 && err.code === "http_error");
  });

  test("a success that is not JSON is invalid_response", async () => {
    const script = scriptedFetch([() => new Response("not json", { status: 200 })]);
    const client = new ContextIQ({ ...fast, fetch: script.fetch });
    await assert.rejects(client.sessions.list(), (err) => err instanceof ContextIQError && err.code === "invalid_response" && err.status === 0);
  });

  test("Retry-After as seconds or an HTTP date", () => {
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter("3"), 3);
    assert.equal(parseRetryAfter(" 0 "), 0);
    assert.equal(parseRetryAfter("soon"), undefined);
    const inTen = new Date(Date.now() + 10_000).toUTCString();
    const seconds = parseRetryAfter(inTen);
    assert.ok(seconds >= 9 && seconds <= 11, String(seconds));
    assert.equal(parseRetryAfter(new Date(Date.now() - 10_000).toUTCString()), 0);
  });
});

describe("requests", () => {
  test("URL, headers, bodies and queries", async () => {
    const script = scriptedFetch([(url) => (url.includes("/events") || url.endsWith("/state") ? json(200, { events: [], ...SESSION }) : json(200, { sessions: [], memories: [] }))]);
    const client = new ContextIQ({ baseUrl: "http://ciq.test/base///", token: "jwt.token.here", engine: "A", headers: { "x-extra": "1" }, fetch: script.fetch });
    await client.sessions.list({ user_id: "u 1", limit: 5 });
    await client.memories.list({ scope: { user_id: "u1" }, created_after: new Date("2026-01-01T00:00:00Z") });
    await client.sessions.patchState("a/b", { x: null });
    await client.sessions.get("s1", { include_events: false });
    await client.health();
    const [list, memories, patch, get, health] = script.requests;
    assert.equal(list.url, "http://ciq.test/base/api/v1/sessions?user_id=u+1&limit=5");
    assert.equal(list.method, "GET");
    assert.equal(list.headers.authorization, "Bearer jwt.token.here");
    assert.equal(list.headers["x-api-key"], undefined);
    assert.equal(list.headers["x-engine-id"], "A");
    assert.equal(list.headers["x-extra"], "1");
    assert.equal(list.body, undefined);
    assert.equal(memories.url, "http://ciq.test/base/api/v1/memories?scope=%7B%22user_id%22%3A%22u1%22%7D&created_after=2026-01-01T00%3A00%3A00.000Z");
    assert.equal(patch.url, "http://ciq.test/base/api/v1/sessions/a%2Fb/state");
    assert.equal(patch.method, "PATCH");
    assert.equal(patch.headers["content-type"], "application/merge-patch+json");
    assert.equal(patch.body, '{"x":null}');
    assert.equal(get.url, "http://ciq.test/base/api/v1/sessions/s1?include_events=false");
    assert.equal(health.headers.authorization, undefined, "no credentials to the open service endpoints");
    assert.equal(health.headers["x-engine-id"], undefined);
  });

  test("an empty id is refused before any request", async () => {
    const script = scriptedFetch([() => json(200, {})]);
    const client = new ContextIQ({ ...fast, fetch: script.fetch });
    await assert.rejects(client.sessions.get(""), TypeError);
    assert.equal(script.requests.length, 0);
  });

  test("options are checked", () => {
    assert.throws(() => new ContextIQ({ maxRetries: -1 }), TypeError);
    assert.throws(() => new ContextIQ({ timeoutMs: Number.NaN }), TypeError);
  });

  test("iter stops on a cursor handed out twice", async () => {
    const page = (cursor) => json(200, { sessions: [{ ...SESSION, id: cursor ?? "first" }], next_cursor: "same" });
    const script = scriptedFetch([(url) => page(new URL(url).searchParams.get("cursor"))]);
    const client = new ContextIQ({ ...fast, fetch: script.fetch });
    const ids = [];
    for await (const session of client.sessions.iter()) ids.push(session.id);
    assert.deepEqual(ids, ["first", "same"]);
  });

  test("iter goes on past an empty page that has a cursor", async () => {
    const script = scriptedFetch([
      () => json(200, { events: [], next_cursor: "c1" }),
      () => json(200, { events: [{ seq: 1 }], next_cursor: null }),
    ]);
    const client = new ContextIQ({ ...fast, fetch: script.fetch });
    const seqs = [];
    for await (const event of client.sessions.iterEvents("s1")) seqs.push(event.seq);
    assert.deepEqual(seqs, [1]);
  });

  test("jobs.wait polls until a final status, and gives up with wait_timeout", async () => {
    const job = (status) => json(200, { id: "j1", status });
    let script = scriptedFetch([() => job("pending"), () => job("running"), () => job("failed")]);
    let client = new ContextIQ({ ...fast, fetch: script.fetch });
    assert.equal((await client.jobs.wait("j1", { pollIntervalMs: 5 })).status, "failed");
    assert.equal(script.requests.length, 3);

    script = scriptedFetch([() => job("running")]);
    client = new ContextIQ({ ...fast, fetch: script.fetch });
    await assert.rejects(client.jobs.wait("j1", { pollIntervalMs: 10, maxWaitMs: 60 }), (err) => {
      assert.ok(err instanceof ContextIQError);
      assert.equal(err.code, "wait_timeout");
      assert.equal(err.status, 0);
      return true;
    });
  });

  test("metrics are text", async () => {
    const script = scriptedFetch([() => new Response("# TYPE x counter\nx 1\n", { status: 200, headers: { "content-type": "text/plain" } })]);
    const client = new ContextIQ({ ...fast, fetch: script.fetch });
    assert.equal(await client.metrics(), "# TYPE x counter\nx 1\n");
    assert.match(script.requests[0].headers.accept, /text\/plain/);
  });
});

/** A `text/event-stream` answer sending `chunks` (strings) in turn; open: it then stays open. Records its cancel. */
function sse(chunks, { open = false, fail } = {}) {
  const encoder = new TextEncoder();
  const state = { cancelled: false };
  let index = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (index < chunks.length) controller.enqueue(encoder.encode(chunks[index++]));
      else if (fail) controller.error(fail);
      else if (!open) controller.close();
      else return new Promise(() => {});
    },
    cancel() {
      state.cancelled = true;
    },
  });
  const response = new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
  return Object.assign(response, { state });
}

const collect = async (iterable) => {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
};

describe("event streams", () => {
  const EVENT = (seq) => ({ id: `e${seq}`, seq, kind: "message", content: `line 1\nline ${seq}` });

  test("messages split anywhere, CRLF, comments, multi-line data; end ends the stream", async () => {
    const one = `event: event\r\nid: 1\r\ndata: ${JSON.stringify(EVENT(1))}\r\n\r\n`;
    const two = `: keep-alive\n\nevent: other\ndata: {"ignored": true}\n\nevent:event\nid: 2\ndata: {"id": "e2",\ndata:  "seq": 2}\n\n`;
    const text = one + two + 'event: end\ndata: {"reason":"session_not_found"}\n\n';
    // Every split of the text into two chunks, and one byte a chunk.
    const splits = [...Array(text.length).keys()].map((at) => [text.slice(0, at), text.slice(at)]);
    splits.push([...text]);
    for (const chunks of splits) {
      const answer = sse(chunks, { open: true });
      const script = scriptedFetch([() => answer]);
      const client = new ContextIQ({ ...fast, fetch: script.fetch });
      const events = await collect(client.sessions.streamEvents("s1", { after_seq: 0 }));
      assert.deepEqual(events, [EVENT(1), { id: "e2", seq: 2 }], JSON.stringify(chunks.slice(0, 2)));
      assert.ok(answer.state.cancelled, "the body is cancelled after end");
    }
    // Non-ASCII split inside a character.
    const bytes = new TextEncoder().encode(`event: event\ndata: {"seq": 1, "content": "Lisboa → Porto"}\n\n`);
    const cut = bytes.indexOf(0xe2) + 1;
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(bytes.slice(0, cut));
        controller.enqueue(bytes.slice(cut));
        controller.close();
      },
    });
    const client = new ContextIQ({ ...fast, fetch: async () => new Response(body, { status: 200 }) });
    assert.deepEqual(await collect(client.sessions.streamEvents("s1")), [{ seq: 1, content: "Lisboa → Porto" }]);
  });

  test("the request: path, after_seq, Last-Event-ID, accept, engine", async () => {
    const script = scriptedFetch([() => sse([])]);
    const client = new ContextIQ({ ...fast, engine: "E", fetch: script.fetch });
    await collect(client.sessions.streamEvents("s 1", { after_seq: 3, last_event_id: 7 }, { headers: { "x-extra": "1" } }));
    await collect(client.sessions.streamEvents("s1"));
    await collect(client.jobs.stream("j1", { engine: null }));
    const [first, plain, job] = script.requests;
    assert.equal(first.url, "http://ciq.test/api/v1/sessions/s%201/events/stream?after_seq=3");
    assert.equal(first.method, "GET");
    assert.equal(first.headers["last-event-id"], "7");
    assert.match(first.headers.accept, /^text\/event-stream/);
    assert.equal(first.headers["x-api-key"], "ck_test");
    assert.equal(first.headers["x-engine-id"], "E");
    assert.equal(first.headers["x-extra"], "1");
    assert.equal(plain.url, "http://ciq.test/api/v1/sessions/s1/events/stream");
    assert.equal(plain.headers["last-event-id"], undefined);
    assert.equal(job.url, "http://ciq.test/api/v1/jobs/j1/stream");
    assert.equal(job.headers["x-engine-id"], undefined);
  });

  test("break and the signal close the connection", async () => {
    let answer = sse([`event: event\ndata: ${JSON.stringify(EVENT(1))}\n\n`], { open: true });
    const client = new ContextIQ({ ...fast, fetch: async () => answer });
    for await (const event of client.sessions.streamEvents("s1")) {
      assert.equal(event.seq, 1);
      break;
    }
    assert.ok(answer.state.cancelled, "break cancels the body");

    answer = sse([`event: event\ndata: ${JSON.stringify(EVENT(1))}\n\n`], { open: true });
    const aborter = new AbortController();
    const seen = [];
    setTimeout(() => aborter.abort(new Error("stop")), 50);
    for await (const event of client.sessions.streamEvents("s1", { signal: aborter.signal })) seen.push(event.seq);
    assert.deepEqual(seen, [1], "an abort ends the stream, without an error");
    assert.ok(answer.state.cancelled);

    answer = sse([`event: job\ndata: {"id": "j1", "status": "running"}\n\n`], { open: true });
    const jobAborter = new AbortController();
    setTimeout(() => jobAborter.abort(), 50);
    assert.deepEqual(await collect(client.jobs.stream("j1", { signal: jobAborter.signal })), [{ id: "j1", status: "running" }]);
    assert.ok(answer.state.cancelled);
  });

  test("a job stream ends with a finished job, even if the body stays open", async () => {
    const job = (status) => `event: job\ndata: ${JSON.stringify({ id: "j1", status })}\n\n`;
    const answer = sse([job("pending"), ": ping\n\n", job("running"), job("failed"), job("never")], { open: true });
    const client = new ContextIQ({ ...fast, fetch: async () => answer });
    assert.deepEqual((await collect(client.jobs.stream("j1"))).map((j) => j.status), ["pending", "running", "failed"]);
    assert.ok(answer.state.cancelled);
  });

  test("before the stream starts, a call's rules: retries, errors, timeouts", async () => {
    const refuse = () => Promise.reject(new TypeError("fetch failed"));
    const hang = (_url, init) => new Promise((_resolve, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason)));
    const ok = () => sse([`event: event\ndata: {"seq": 1}\n\n`]);
    let script = scriptedFetch([() => problem(503, "shutting_down", {}, { "retry-after": "0" }), () => problem(429, "rate_limited", {}, { "retry-after": "0" }), refuse, hang, ok]);
    let client = new ContextIQ({ ...fast, timeoutMs: 50, maxRetries: 4, fetch: script.fetch });
    assert.deepEqual(await collect(client.sessions.streamEvents("s1")), [{ seq: 1 }]);
    assert.equal(script.requests.length, 5);

    script = scriptedFetch([() => problem(404, "session_not_found"), ok]);
    client = new ContextIQ({ ...fast, fetch: script.fetch });
    await assert.rejects(collect(client.sessions.streamEvents("s1")), (err) => err instanceof ContextIQError && err.status === 404 && err.code === "session_not_found");
    assert.equal(script.requests.length, 1, "not retried");

    script = scriptedFetch([refuse]);
    client = new ContextIQ({ ...fast, fetch: script.fetch, maxRetries: 1 });
    await assert.rejects(collect(client.jobs.stream("j1")), (err) => err instanceof ContextIQError && err.status === 0 && err.code === "network_error");
    assert.equal(script.requests.length, 2);

    script = scriptedFetch([hang]);
    client = new ContextIQ({ ...fast, fetch: script.fetch, maxRetries: 0, timeoutMs: 30 });
    await assert.rejects(collect(client.jobs.stream("j1")), (err) => err instanceof ContextIQError && err.code === "timeout");

    // timeoutMs bounds the wait for the answer, not the stream: a slow stream lives on.
    const slow = new ReadableStream({
      async start(controller) {
        await new Promise((r) => setTimeout(r, 120));
        controller.enqueue(new TextEncoder().encode('event: event\ndata: {"seq": 1}\n\n'));
        controller.close();
      },
    });
    client = new ContextIQ({ ...fast, timeoutMs: 30, fetch: async () => new Response(slow, { status: 200 }) });
    assert.deepEqual(await collect(client.sessions.streamEvents("s1")), [{ seq: 1 }]);

    // An abort while waiting to retry ends the stream quietly.
    script = scriptedFetch([() => problem(429, "rate_limited", {}, { "retry-after": "5" })]);
    client = new ContextIQ({ ...fast, fetch: script.fetch });
    const started = Date.now();
    assert.deepEqual(await collect(client.sessions.streamEvents("s1", {}, { signal: AbortSignal.timeout(50) })), []);
    assert.ok(Date.now() - started < 2000);
  });

  test("a stream that breaks is a network_error; data that is not JSON, an invalid_response", async () => {
    let answer = sse([`event: event\ndata: {"seq": 1}\n\n`, "event: event\ndata: {"], { fail: new TypeError("terminated") });
    let client = new ContextIQ({ ...fast, fetch: async () => answer });
    const seen = [];
    await assert.rejects(
      (async () => {
        for await (const event of client.sessions.streamEvents("s1")) seen.push(event.seq);
      })(),
      (err) => err instanceof ContextIQError && err.status === 0 && err.code === "network_error" && err.cause instanceof TypeError,
    );
    assert.deepEqual(seen, [1], "the events before the break were delivered");

    answer = sse(["event: event\ndata: not json\n\n"], { open: true });
    client = new ContextIQ({ ...fast, fetch: async () => answer });
    await assert.rejects(collect(client.sessions.streamEvents("s1")), (err) => err instanceof ContextIQError && err.code === "invalid_response");
    assert.ok(answer.state.cancelled);
  });
});
