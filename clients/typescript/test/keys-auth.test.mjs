import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ContextIQ, ContextIQError } from "../dist/index.js";
import { signJwt, startServer, unique } from "./helpers.mjs";

let server;
let admin;

before(async () => {
  server = await startServer();
  admin = new ContextIQ({ baseUrl: server.baseUrl, apiKey: server.adminKey });
});
after(async () => {
  await server?.stop();
});

const USER_PERMISSIONS = ["SESSION_READ", "SESSION_WRITE", "MEMORY_READ", "MEMORY_WRITE"];

describe("keys", () => {
  test("create, list, get, revoke", async () => {
    const name = unique("agent-u1");
    const created = await admin.keys.create({ name, permissions: USER_PERMISSIONS, scope: { user_id: "u1" }, expires_in_seconds: 3600, rate_limit_per_second: 50 });
    assert.match(created.key, /^ck_/);
    assert.equal(created.name, name);
    assert.equal(created.org_id, "default");
    assert.deepEqual(created.scope, { user_id: "u1" });
    assert.deepEqual(created.permissions.slice().sort(), USER_PERMISSIONS.slice().sort());
    assert.equal(created.rate_limit_per_second, 50);
    assert.ok(created.expires_at);
    assert.ok(created.key.startsWith(created.prefix));
    assert.ok(created.parent_id, "a key made with a key records its creator");

    const { keys } = await admin.keys.list();
    const listed = keys.find((k) => k.id === created.id);
    assert.ok(listed);
    assert.equal(listed.key, undefined, "listings never show keys");
    assert.ok(keys.some((k) => k.name === "bootstrap-admin"));

    const got = await admin.keys.get(created.id);
    assert.equal(got.id, created.id);
    assert.equal(got.revoked_at ?? null, null);

    const user = new ContextIQ({ baseUrl: server.baseUrl, apiKey: created.key });
    await user.sessions.list({ user_id: "u1" });

    const revoked = await admin.keys.revoke(created.id);
    assert.equal(revoked.id, created.id);
    assert.ok(revoked.revoked_at);
    await assert.rejects(user.sessions.list(), (err) => err instanceof ContextIQError && err.status === 401 && err.code === "invalid_credentials");
    await assert.rejects(admin.keys.get("00000000-0000-4000-8000-000000000000"), (err) => err.status === 404);
  });

  test("401 without or with bad credentials", async () => {
    const anonymous = new ContextIQ({ baseUrl: server.baseUrl });
    await assert.rejects(anonymous.sessions.list(), (err) => {
      assert.ok(err instanceof ContextIQError);
      assert.equal(err.status, 401);
      assert.equal(err.code, "missing_credentials");
      assert.equal(err.title, "Unauthorized");
      return true;
    });
    // The service endpoints need none.
    assert.equal((await anonymous.health()).status, "ok");
    const wrong = new ContextIQ({ baseUrl: server.baseUrl, apiKey: "ck_not-a-real-key" });
    await assert.rejects(wrong.memories.search({ scope: { user_id: "u1" }, search_query: "x" }), (err) => err.status === 401 && err.code === "invalid_credentials");
    const badToken = new ContextIQ({ baseUrl: server.baseUrl, token: "not.a.jwt" });
    await assert.rejects(badToken.keys.list(), (err) => err.status === 401 && err.code === "invalid_credentials");
  });

  test("403 with a scope-limited key; its reach is its user", async () => {
    const created = await admin.keys.create({ name: unique("agent-u1"), permissions: USER_PERMISSIONS, scope: { user_id: "u1" } });
    const u1 = new ContextIQ({ baseUrl: server.baseUrl, apiKey: created.key });

    await assert.rejects(u1.sessions.create({ user_id: "u2" }), (err) => {
      assert.ok(err instanceof ContextIQError);
      assert.equal(err.status, 403);
      assert.equal(err.code, "forbidden");
      return true;
    });
    await assert.rejects(u1.memories.create({ scope: { user_id: "u2" }, fact: "Not theirs" }), (err) => err.status === 403 && err.code === "forbidden");
    await assert.rejects(u1.keys.list(), (err) => err.status === 403 && err.code === "forbidden", "ADMIN only");
    await assert.rejects(u1.keys.create({ name: "wider", permissions: ["ADMIN"] }), (err) => err.status === 403);

    // Its own user works; another user's session reads as missing.
    const mine = await u1.sessions.create({ user_id: "u1" });
    assert.equal((await u1.sessions.get(mine.id)).user_id, "u1");
    const theirs = await admin.sessions.create({ user_id: "u2" });
    await assert.rejects(u1.sessions.get(theirs.id), (err) => err.status === 404 && err.code === "session_not_found");
    const listed = await u1.sessions.list({ user_id: "u2" });
    assert.deepEqual(listed.sessions, []);
  });

  test("a write-only key gets receipts", async () => {
    const scope = { user_id: unique("wo") };
    const memory = await admin.memories.create({ scope, fact: "Likes tea" });
    const session = await admin.sessions.create({ user_id: scope.user_id });
    const writer = await admin.keys.create({ name: unique("writer"), permissions: ["MEMORY_WRITE", "SESSION_WRITE"] });
    const w = new ContextIQ({ baseUrl: server.baseUrl, apiKey: writer.key });
    const receipt = await w.memories.update(memory.id, { fact: "Likes green tea" });
    assert.deepEqual(Object.keys(receipt).sort(), ["id", "updated_at"]);
    assert.equal(receipt.id, memory.id);
    const stateReceipt = await w.sessions.patchState(session.id, { a: 1 });
    assert.deepEqual(Object.keys(stateReceipt).sort(), ["id", "updated_at"]);
    await assert.rejects(w.memories.get(memory.id), (err) => err.status === 403);
  });

  test("a JWT as token", async () => {
    const token = signJwt({ sub: "sdk-test", org_id: "default", permissions: ["SESSION_READ", "SESSION_WRITE"] });
    const client = new ContextIQ({ baseUrl: server.baseUrl, token });
    const session = await client.sessions.create({ user_id: unique("jwt") });
    assert.equal((await client.sessions.get(session.id)).id, session.id);
    await assert.rejects(client.memories.list({ scope: { user_id: "u1" } }), (err) => err.status === 403 && err.code === "forbidden");
  });

  test("apiKey and token together are refused before any request", () => {
    assert.throws(() => new ContextIQ({ apiKey: "ck_x", token: "y" }), TypeError);
  });
});
