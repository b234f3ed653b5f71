// The README's quick start runs as written (against a fresh server) and prints what it says.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";

import { startServer } from "./helpers.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
let server;

before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

function quickStart() {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  return readme.split("## Quick start")[1].match(/```ts\n([\s\S]*?)```/)[1];
}

test("the repository's README shows the quick start this test runs", () => {
  const marker = "<!-- README test: typescript sdk -->";
  const readme = readFileSync(join(ROOT, "..", "..", "README.md"), "utf8");
  assert.ok(readme.includes(marker), `no ${marker} in README.md`);
  const block = readme.split(marker)[1].match(/^\s*```ts\n([\s\S]*?)```/);
  assert.ok(block, `no ts block after ${marker}`);
  assert.equal(block[1], quickStart());
});

test("the quick start", async () => {
  const block = quickStart();
  assert.ok(block.split("\n").filter(Boolean).length <= 10, "ten lines");
  const program = block
    .replace('from "@contextiq/client"', `from ${JSON.stringify(pathToFileURL(join(ROOT, "dist/index.js")).href)}`)
    .replace("http://127.0.0.1:8000", server.baseUrl);
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", program], {
    env: { ...process.env, CONTEXTIQ_API_KEY: server.adminKey },
  });
  const [counts, fact] = stdout.trim().split("\n");
  assert.match(counts, /added: 1\b/);
  assert.equal(fact, "User lives in Lisbon");
});
