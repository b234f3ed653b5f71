// Starts the real `contextiq` binary for the tests: a fresh data directory, a free port,
// authentication on; reads the admin key the server creates on its first start.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const BINARY = process.env.CONTEXTIQ_BIN ? resolve(process.env.CONTEXTIQ_BIN) : join(REPO, "target/debug/contextiq");

/** The secret of the JWTs the tests sign (the servers they start accept it). */
export const JWT_SECRET = "sdk-tests-jwt-secret-0123456789abcdef";

// Variables of the environment that would point the server elsewhere than a fresh embedded store.
const SCRUBBED = /^(CONTEXTIQ_|DATABASE_|REDIS_|RABBITMQ_|QDRANT_|AUTH_|RATE_LIMIT_|SESSIONS_URL$|MEMORY_URL$|CORS_ORIGINS$|OTEL_|LLM_|WORKER_|RUST_LOG$|LOG_)/;

/**
 * Starts a server; resolves with `{ baseUrl, adminKey, dataDir, log(), stop() }`.
 * `env` adds or overrides variables (RATE_LIMIT_PER_SECOND, ...).
 */
export async function startServer(env = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`no contextiq binary at ${BINARY}: build it (cargo build -p contextiq-cli) or set CONTEXTIQ_BIN`);
  }
  const dataDir = mkdtempSync(join(tmpdir(), "contextiq-sdk-"));
  const childEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !SCRUBBED.test(name)));
  Object.assign(childEnv, {
    CONTEXTIQ_BIND: "127.0.0.1:0",
    CONTEXTIQ_DATA_DIR: dataDir,
    AUTH_REQUIRE_AUTH: "true",
    AUTH_JWT_SECRET_KEY: JWT_SECRET,
    RATE_LIMIT_PER_SECOND: "0",
    LOG_FORMAT: "json",
    LOG_LEVEL: "info",
    WORKER_POLL_INTERVAL_MS: "100",
    ...env,
  });
  const child = spawn(BINARY, ["serve"], { cwd: REPO, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  let address;
  let exited = null;
  const onLine = (chunk) => {
    output += chunk.toString();
    if (address) return;
    for (const line of output.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const record = JSON.parse(line);
        if (record.message === "listening" && record.address) address = record.address;
      } catch {
        // A partial line; the next chunk completes it.
      }
    }
  };
  child.stdout.on("data", onLine);
  child.stderr.on("data", onLine);
  const exitedPromise = new Promise((resolveExit) => child.once("exit", (code, signal) => {
    exited = { code, signal };
    resolveExit(exited);
  }));
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  const stop = async () => {
    process.removeListener("exit", killOnExit);
    if (!exited) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exitedPromise;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  const keyFile = join(dataDir, "admin-key.txt");
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`contextiq exited (${JSON.stringify(exited)}) before serving:\n${output.slice(-4000)}`);
    }
    if (address && existsSync(keyFile)) {
      const adminKey = readFileSync(keyFile, "utf8").trim();
      if (adminKey.startsWith("ck_")) {
        const baseUrl = `http://${address}`;
        const healthy = await fetch(`${baseUrl}/health`).then((r) => r.ok, () => false);
        if (healthy) return { baseUrl, adminKey, dataDir, log: () => output, stop };
      }
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`contextiq did not start within 60 s:\n${output.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** An HS256 JWT signed with `JWT_SECRET`. */
export function signJwt(claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const body = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ iss: "contextiq", exp: now + 600, ...claims })}`;
  const signature = createHmac("sha256", JWT_SECRET).update(body).digest("base64url");
  return `${body}.${signature}`;
}

/**
 * A `fetch` that records every request (method, path, query, headers, status, times) and
 * passes it to the global fetch.
 */
export function recordingFetch() {
  const requests = [];
  const fn = async (url, init = {}) => {
    const parsed = new URL(url);
    const entry = {
      method: init.method ?? "GET",
      path: parsed.pathname,
      query: Object.fromEntries(parsed.searchParams),
      headers: { ...init.headers },
      body: init.body,
      sentAt: Date.now(),
      status: undefined,
      receivedAt: undefined,
    };
    requests.push(entry);
    const response = await fetch(url, init);
    entry.status = response.status;
    entry.receivedAt = Date.now();
    return response;
  };
  return { fetch: fn, requests };
}

/** A fake `fetch` answering from a list of responders, recording each request. */
export function scriptedFetch(responders) {
  const requests = [];
  let index = 0;
  const fn = async (url, init = {}) => {
    requests.push({ url, method: init.method ?? "GET", headers: { ...init.headers }, body: init.body, at: Date.now() });
    const responder = responders[Math.min(index, responders.length - 1)];
    index += 1;
    return responder(url, init);
  };
  return { fetch: fn, requests };
}

/** A JSON answer. */
export function json(status, body, headers = {}) {
  const type = status >= 400 ? "application/problem+json" : "application/json";
  return new Response(status === 204 ? null : JSON.stringify(body), { status, headers: { "content-type": type, ...headers } });
}

/** A problem answer. */
export function problem(status, code, extra = {}, headers = {}) {
  return json(status, { type: `urn:contextiq:problem:${code}`, title: code, status, detail: `${code} detail`, code, ...extra }, headers);
}

/** A unique name for this run, so tests never see each other's data. */
export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
