/**
 * `@contextiq/client`: the official TypeScript client of ContextIQ's native API (`/api/v1`)
 * and service endpoints. Runs on Node 20+ and in browsers (global `fetch`), no dependencies.
 */
export { ContextIQ, Sessions, Memories, Jobs, Keys } from "./client.js";
export type { ClientOptions, WaitOptions } from "./client.js";
export { ContextIQError, parseRetryAfter } from "./errors.js";
export type { ContextIQErrorInit } from "./errors.js";
export type { FetchLike, RequestOptions } from "./http.js";
export { OPERATIONS } from "./operations.js";
export type { HttpMethod, Operation, OperationId } from "./operations.js";
export type * from "./types.js";
