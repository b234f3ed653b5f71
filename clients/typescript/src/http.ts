import { ContextIQError } from "./errors.js";
import { operation, type Operation, type OperationId } from "./operations.js";

/** The `fetch` the client calls: the global one, or any with its signature. */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/** Options of one call; each overrides the client's own for that call. */
export interface RequestOptions {
  /** Aborts the call (and its retries); the call then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Milliseconds one attempt may take; 0 for no limit. */
  timeoutMs?: number;
  /** Retries after a 429, a 503, or (idempotent calls only) a network error; 0 disables. */
  maxRetries?: number;
  /** The reasoning engine of this call (`X-Engine-Id`); `null` sends none (the `default` engine). */
  engine?: string | null;
  /** Extra headers of this call. */
  headers?: Record<string, string>;
}

/** The settings the transport needs. */
export interface TransportConfig {
  baseUrl: string;
  apiKey: string | undefined;
  token: string | undefined;
  engine: string | undefined;
  timeoutMs: number;
  maxRetries: number;
  retryBaseDelayMs: number;
  maxRetryDelayMs: number;
  headers: Record<string, string>;
  fetch: FetchLike | undefined;
}

type QueryValue = string | number | boolean | Date | null | undefined;

/** One request, by operation. */
export interface CallSpec {
  op: OperationId;
  /** Values of the path template's `{name}`s. */
  path?: Record<string, string>;
  query?: Record<string, QueryValue>;
  body?: unknown;
  contentType?: string;
  /** How to read a success: JSON (default), text, or nothing (204). */
  accept?: "json" | "text";
  options?: RequestOptions | undefined;
}

/** A Server-Sent Events stream, by operation. */
export interface StreamSpec extends CallSpec {
  /** Sent as `Last-Event-ID`: the id of the last message received, to resume after it. */
  lastEventId?: number | string | undefined;
  /** Another signal that ends the stream (besides `options.signal`). */
  signal?: AbortSignal | undefined;
}

/** Timed out: distinguishes the attempt's own deadline from the caller's abort. */
class AttemptTimeout extends Error {}

/** Sends requests: credentials, engine, timeouts, retries, errors. */
export class Transport {
  constructor(readonly config: TransportConfig) {}

  /** Sends one operation and resolves with its answer's body (undefined for 204). */
  async call<T>(spec: CallSpec): Promise<T> {
    const op = operation(spec.op);
    const options = spec.options ?? {};
    const url = this.url(op.path, spec.path, spec.query);
    const accept = spec.accept === "text" ? "text/plain, application/problem+json" : "application/json, application/problem+json";
    const headers = this.headers(op, options, accept);
    let body: string | undefined;
    if (spec.body !== undefined) {
      body = JSON.stringify(spec.body);
      headers["content-type"] = spec.contentType ?? "application/json";
    }
    Object.assign(headers, options.headers);
    const maxRetries = options.maxRetries ?? this.config.maxRetries;
    const timeoutMs = options.timeoutMs ?? this.config.timeoutMs;
    const fetchFn = this.fetchFn();

    for (let attempt = 0; ; attempt++) {
      options.signal?.throwIfAborted();
      // Rejects only on the caller's abort, with the signal's reason, as fetch does.
      const outcome = await this.attempt<T>(fetchFn, url, { method: op.method, headers, body }, spec.accept ?? "json", timeoutMs, options.signal);
      if ("value" in outcome) return outcome.value;
      const error = outcome.error;
      const delay = this.retryDelay(error, op.idempotent, attempt);
      if (delay === undefined || attempt >= maxRetries) throw error;
      await sleep(delay, options.signal);
    }
  }

  /**
   * Opens a Server-Sent Events stream (a `GET`) and yields its messages as `[event, data]`
   * (`data` parsed as JSON) until the server ends it, the consumer stops (`break`, `return`)
   * or a signal aborts; the connection is closed then. Until the stream starts, a call's rules
   * apply: `timeoutMs` per attempt, retries after a 429, a 503 or a network error, an error
   * answer thrown as a `ContextIQError`. An abort, before or after, ends the stream quietly.
   */
  async *events(spec: StreamSpec): AsyncGenerator<[string, unknown], void, undefined> {
    const op = operation(spec.op);
    const options = spec.options ?? {};
    const signals = [spec.signal, options.signal].filter((s): s is AbortSignal => s !== undefined);
    const url = this.url(op.path, spec.path, spec.query);
    const headers = this.headers(op, options, "text/event-stream, application/problem+json");
    if (spec.lastEventId !== undefined) headers["last-event-id"] = String(spec.lastEventId);
    Object.assign(headers, options.headers);
    const maxRetries = options.maxRetries ?? this.config.maxRetries;
    const timeoutMs = options.timeoutMs ?? this.config.timeoutMs;
    const fetchFn = this.fetchFn();

    // Aborted by the caller's signals, and by the end of this generator (which closes the body).
    const stream = new AbortController();
    const onAbort = () => stream.abort();
    if (signals.some((signal) => signal.aborted)) return;
    for (const signal of signals) signal.addEventListener("abort", onAbort, { once: true });
    try {
      let response: Response | undefined;
      for (let attempt = 0; response === undefined; attempt++) {
        if (stream.signal.aborted) return;
        const controller = new AbortController();
        const follow = () => controller.abort(stream.signal.reason);
        stream.signal.addEventListener("abort", follow, { once: true });
        const timer = timeoutMs > 0 && Number.isFinite(timeoutMs) ? setTimeout(() => controller.abort(new AttemptTimeout()), timeoutMs) : undefined;
        let error: ContextIQError;
        try {
          const answer = await fetchFn(url, { method: "GET", headers, signal: controller.signal });
          if (answer.ok && answer.body !== null) {
            response = answer;
            continue;
          }
          error = answer.ok ? invalidStream(answer, "no body") : await ContextIQError.fromResponse(answer);
        } catch (cause) {
          if (stream.signal.aborted) return;
          error = failure(cause, controller.signal, "GET", url, timeoutMs);
        } finally {
          if (timer !== undefined) clearTimeout(timer);
        }
        const delay = this.retryDelay(error, op.idempotent, attempt);
        if (delay === undefined || attempt >= maxRetries) throw error;
        try {
          await sleep(delay, stream.signal);
        } catch {
          return;
        }
      }
      yield* readEvents(response, stream.signal, url);
    } finally {
      for (const signal of signals) signal.removeEventListener("abort", onAbort);
      stream.abort();
    }
  }

  /** The headers of a request of `op`: `accept`, the client's headers, credentials, engine. */
  private headers(op: Operation, options: RequestOptions, accept: string): Record<string, string> {
    const headers: Record<string, string> = { accept, ...this.config.headers };
    if (!op.public) {
      if (this.config.apiKey !== undefined) headers["x-api-key"] = this.config.apiKey;
      if (this.config.token !== undefined) headers["authorization"] = `Bearer ${this.config.token}`;
    }
    const engine = options.engine === undefined ? this.config.engine : options.engine;
    if (op.engine && engine !== undefined && engine !== null) headers["x-engine-id"] = engine;
    return headers;
  }

  /** The `fetch` to call. */
  private fetchFn(): FetchLike {
    if (this.config.fetch === undefined && typeof globalThis.fetch !== "function") {
      throw new TypeError("ContextIQ: no fetch available; pass one as the `fetch` option");
    }
    // Called through globalThis: some browsers refuse a fetch detached from its window.
    return this.config.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** The wait before retrying after `error`, or undefined when it is not retried. */
  private retryDelay(error: ContextIQError, idempotent: boolean, attempt: number): number | undefined {
    let retryable: boolean;
    if (error.status === 429) retryable = true;
    // A 503 `timeout` means the server gave up on a request it had started: sending a
    // non-idempotent one again could do it twice. Other 503s (store unavailable, shutting
    // down) did nothing.
    else if (error.status === 503) retryable = idempotent || error.code !== "timeout";
    else if (error.status === 0) retryable = idempotent && (error.code === "network_error" || error.code === "timeout");
    else retryable = false;
    if (!retryable) return undefined;
    const cap = this.config.maxRetryDelayMs;
    if (error.retryAfter !== undefined) {
      const wait = error.retryAfter * 1000;
      // Waiting less than the server asks would only be refused again.
      if (wait > cap) return undefined;
      // A little jitter so that clients told the same second do not all come back at once.
      return wait + Math.random() * Math.min(250, this.config.retryBaseDelayMs);
    }
    const exponential = Math.min(cap, this.config.retryBaseDelayMs * 2 ** attempt);
    return exponential / 2 + (Math.random() * exponential) / 2;
  }

  /** One attempt: its answer, or the error to retry or throw. Rejects only on the caller's abort. */
  private async attempt<T>(
    fetchFn: FetchLike,
    url: string,
    init: { method: string; headers: Record<string, string>; body: string | undefined },
    accept: "json" | "text",
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<{ value: T } | { error: ContextIQError }> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      timer = setTimeout(() => controller.abort(new AttemptTimeout()), timeoutMs);
    }
    try {
      const requestInit: RequestInit = { method: init.method, headers: init.headers, signal: controller.signal };
      if (init.body !== undefined) requestInit.body = init.body;
      const response = await fetchFn(url, requestInit);
      if (!response.ok) return { error: await ContextIQError.fromResponse(response) };
      if (response.status === 204) {
        await response.body?.cancel().catch(() => undefined);
        return { value: undefined as T };
      }
      const text = await response.text();
      if (accept === "text") return { value: text as T };
      if (text === "") return { value: undefined as T };
      try {
        return { value: JSON.parse(text) as T };
      } catch (cause) {
        return {
          error: new ContextIQError({
            status: 0,
            code: "invalid_response",
            title: "Invalid response",
            detail: `a ${response.status} answer whose body is not JSON: ${text.slice(0, 200)}`,
            correlationId: response.headers.get("x-correlation-id") ?? undefined,
            cause,
          }),
        };
      }
    } catch (cause) {
      if (signal?.aborted) throw signal.reason;
      return { error: failure(cause, controller.signal, init.method, url, timeoutMs) };
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  private url(template: string, params: Record<string, string> | undefined, query: Record<string, QueryValue> | undefined): string {
    const path = template.replace(/\{(\w+)\}/g, (_, name: string) => {
      const value = params?.[name];
      if (typeof value !== "string" || value === "") throw new TypeError(`ContextIQ: ${name} must be a non-empty string`);
      return encodeURIComponent(value);
    });
    let url = this.config.baseUrl + path;
    if (query) {
      const search = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) {
        if (value === undefined || value === null) continue;
        search.append(name, value instanceof Date ? value.toISOString() : String(value));
      }
      const text = search.toString();
      if (text) url += `?${text}`;
    }
    return url;
  }
}

/** The error of an attempt that got no answer: its own `timeout`, or a `network_error`. */
function failure(cause: unknown, attempt: AbortSignal, method: string, url: string, timeoutMs: number): ContextIQError {
  if (attempt.aborted && attempt.reason instanceof AttemptTimeout) {
    return new ContextIQError({
      status: 0,
      code: "timeout",
      title: "Timed out",
      detail: `no answer from ${method} ${url} within ${timeoutMs} ms`,
      cause,
    });
  }
  return new ContextIQError({
    status: 0,
    code: "network_error",
    title: "Network error",
    detail: `${method} ${url} failed: ${describe(cause)}`,
    cause,
  });
}

/** A success that is not the stream it should be. */
function invalidStream(response: Response, why: string, cause?: unknown): ContextIQError {
  return new ContextIQError({
    status: 0,
    code: "invalid_response",
    title: "Invalid response",
    detail: `a ${response.status} event stream with ${why}`,
    correlationId: response.headers.get("x-correlation-id") ?? undefined,
    cause,
  });
}

/**
 * The messages of a `text/event-stream` body (the WHATWG HTML "event stream" format), as
 * `[event, JSON-parsed data]`: comments (keep-alives) and `id`/`retry` fields are skipped, a
 * message without data is not dispatched. A body that breaks before the server ends it throws
 * a `network_error`, unless `aborted` fired; the body is cancelled however the reading ends.
 */
async function* readEvents(response: Response, aborted: AbortSignal, url: string): AsyncGenerator<[string, unknown], void, undefined> {
  const reader = response.body!.getReader();
  // A fetch of the caller's may not tie the body to the signal: cancelling ends a pending read.
  const onAbort = () => void reader.cancel().catch(() => undefined);
  aborted.addEventListener("abort", onAbort, { once: true });
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data: string[] = [];
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (cause) {
        if (aborted.aborted) return;
        throw new ContextIQError({
          status: 0,
          code: "network_error",
          title: "Network error",
          detail: `the event stream of GET ${url} broke: ${describe(cause)}`,
          cause,
        });
      }
      if (chunk.done || aborted.aborted) return;
      buffer += decoder.decode(chunk.value, { stream: true });
      for (;;) {
        const end = buffer.search(/[\r\n]/);
        // A CR that ends the buffer may be the first half of a CRLF: wait for the next chunk.
        if (end < 0 || (buffer[end] === "\r" && end === buffer.length - 1)) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(buffer.startsWith("\r\n", end) ? end + 2 : end + 1);
        if (line === "") {
          if (data.length > 0) {
            let value: unknown;
            try {
              value = JSON.parse(data.join("\n"));
            } catch (cause) {
              throw invalidStream(response, `data that is not JSON: ${data.join("\n").slice(0, 200)}`, cause);
            }
            yield [event || "message", value];
          }
          event = "";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (name === "event") event = value;
          else if (name === "data") data.push(value);
        }
      }
    }
  } finally {
    aborted.removeEventListener("abort", onAbort);
    await reader.cancel().catch(() => undefined);
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
