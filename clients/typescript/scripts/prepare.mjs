// `npm run prepare`: builds dist/ with the pinned TypeScript. npm runs it after `npm install`
// in this folder, and also when another project installs the package from its path
// (`npm install ./clients/typescript`) or from git; in the path case npm does not install this
// package's devDependencies, so the pinned compiler is installed here first (`npm ci`).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");

function run(command, args, env = process.env) {
  const result = spawnSync(command, args, { cwd: root, env, stdio: "inherit", shell: process.platform === "win32" && command === "npm" });
  if (result.error) throw result.error;
  if (result.status !== 0) process.exit(result.status ?? 1);
}

if (!existsSync(tsc)) {
  // The installing npm's settings reach this script as npm_config_* variables; those that
  // would install elsewhere or leave the compiler out must not reach the nested install.
  const dropped = /^npm_config_(global|prefix|location|omit|include|production|only|also|dev|dry_run|ignore_scripts|workspaces?|install_links|save.*|package_lock.*)$/i;
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !dropped.test(name)));
  const npm = process.env.npm_execpath;
  const args = ["ci", "--include=dev", "--ignore-scripts", "--no-audit", "--no-fund"];
  console.error("@contextiq/client: installing the pinned TypeScript compiler to build dist/");
  if (npm && npm.endsWith(".js")) run(process.execPath, [npm, ...args], env);
  else run("npm", args, env);
}
run(process.execPath, [tsc, "-p", "tsconfig.json"]);
