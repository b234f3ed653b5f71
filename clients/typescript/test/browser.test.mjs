// What a browser needs: the built client uses nothing of Node's, and a server with CORS_ORIGINS
// lets a page send the client's headers and read the ones it reads (Retry-After).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { startServer } from "./helpers.mjs";

const DIST = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");
const ORIGIN = "https://app.example.com";

/** A raw request (node's fetch would not send a browser's Origin and preflight headers as given). */
function raw(url, method, headers) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("browsers", () => {
  let server;
  before(async () => {
    server = await startServer({ CORS_ORIGINS: ORIGIN, RATE_LIMIT_PER_SECOND: "1", RATE_LIMIT_BURST: "1" });
  });
  after(async () => {
    await server?.stop();
  });

  test("the built client imports only its own modules and uses no Node globals", () => {
    const files = readdirSync(DIST).filter((name) => name.endsWith(".js"));
    assert.ok(files.includes("index.js"));
    for (const name of files) {
      const code = readFileSync(join(DIST, name), "utf8").replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
      for (const [, specifier] of code.matchAll(/\bfrom\s+"([^"]+)"/g)) {
        assert.match(specifier, /^\.\/[\w-]+\.js$/, `${name} imports ${specifier}`);
      }
      assert.doesNotMatch(code, /\bimport\(|\brequire\(/, `${name} loads modules dynamically`);
      assert.doesNotMatch(code, /\b(process|Buffer|__dirname|global)\b/, `${name} uses a Node global`);
    }
  });

  test("a preflight allows the client's headers; answers expose Retry-After", async () => {
    const preflight = await raw(`${server.baseUrl}/api/v1/sessions`, "OPTIONS", {
      origin: ORIGIN,
      "access-control-request-method": "POST",
      "access-control-request-headers": "x-api-key,x-engine-id,content-type,authorization",
    });
    assert.ok(preflight.status < 300, `preflight: ${preflight.status}`);
    assert.equal(preflight.headers["access-control-allow-origin"], ORIGIN);
    const allowed = (preflight.headers["access-control-allow-headers"] ?? "").toLowerCase();
    for (const header of ["x-api-key", "x-engine-id", "content-type", "authorization"]) {
      assert.ok(allowed === "*" || allowed.includes(header), `${header} allowed (${allowed})`);
    }

    let limited;
    for (let i = 0; i < 5 && !limited; i++) {
      const answer = await raw(`${server.baseUrl}/api/v1/keys`, "GET", { origin: ORIGIN, "x-api-key": server.adminKey });
      if (answer.status === 429) limited = answer;
    }
    assert.ok(limited, "a 429 came");
    assert.equal(limited.headers["access-control-allow-origin"], ORIGIN);
    assert.ok(limited.headers["retry-after"]);
    assert.match((limited.headers["access-control-expose-headers"] ?? "").toLowerCase(), /retry-after/);
  });
});
