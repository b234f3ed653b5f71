import type { Problem } from "./types.js";

/** What a `ContextIQError` is made of. */
export interface ContextIQErrorInit {
  status: number;
  code: string;
  title: string;
  detail: string;
  type?: string;
  field?: string | null;
  retryAfter?: number;
  correlationId?: string;
  problem?: Problem;
  cause?: unknown;
}

/**
 * The one error the client throws.
 *
 * For every problem answer of the server (`application/problem+json`), `status`, `code`,
 * `title`, `detail`, `type` and `field` are the problem's, and `retryAfter` is the
 * `Retry-After` header in seconds (429 and 503 carry it). An error answer that is not a
 * problem (a proxy's HTML page, a bodiless 400) has the code `http_error`.
 *
 * When no answer came at all, `status` is 0 and `code` says why: `network_error` (the
 * connection failed; `cause` holds fetch's error), `timeout` (no answer within `timeoutMs`),
 * `invalid_response` (a success whose body is not the JSON it should be) or `wait_timeout`
 * (`jobs.wait` gave up). An abort through your own `signal` is not wrapped: it rejects with
 * the signal's reason, as `fetch` does (a stream of events just ends).
 */
export class ContextIQError extends Error {
  /** The HTTP status, or 0 when no answer came. */
  readonly status: number;
  /** The problem's stable code (`session_not_found`, `validation_failed`, `rate_limited`, ...). */
  readonly code: string;
  readonly title: string;
  readonly detail: string;
  /** `urn:contextiq:problem:<code>` for the server's problems. */
  readonly type: string | undefined;
  /** The JSON path (body), name (query) or header at fault, for validation failures. */
  readonly field: string | undefined;
  /** Seconds to wait before trying again, from `Retry-After`. */
  readonly retryAfter: number | undefined;
  /** The server's `X-Correlation-ID` of the request, to find it in the server's logs. */
  readonly correlationId: string | undefined;
  /** The problem body as the server sent it, when it sent one. */
  readonly problem: Problem | undefined;

  constructor(init: ContextIQErrorInit) {
    const where = init.status ? `${init.status} ${init.code}` : init.code;
    super(`${where}: ${init.detail || init.title}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "ContextIQError";
    this.status = init.status;
    this.code = init.code;
    this.title = init.title;
    this.detail = init.detail;
    this.type = init.type;
    this.field = init.field ?? undefined;
    this.retryAfter = init.retryAfter;
    this.correlationId = init.correlationId;
    this.problem = init.problem;
  }

  /** Builds the error of an answer whose status is not a success. */
  static async fromResponse(response: Response): Promise<ContextIQError> {
    const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
    const correlationId = response.headers.get("x-correlation-id") ?? undefined;
    let text = "";
    try {
      text = await response.text();
    } catch {
      // The body could not be read; the status still says what happened.
    }
    const problem = parseProblem(text);
    if (problem) {
      return new ContextIQError({
        status: response.status,
        code: problem.code,
        title: problem.title ?? "",
        detail: problem.detail ?? "",
        type: problem.type,
        field: problem.field ?? undefined,
        retryAfter,
        correlationId,
        problem,
      });
    }
    const title = response.statusText || `HTTP ${response.status}`;
    return new ContextIQError({
      status: response.status,
      code: "http_error",
      title,
      detail: text.trim().slice(0, 500) || title,
      retryAfter,
      correlationId,
    });
  }
}

function parseProblem(text: string): Problem | undefined {
  if (!text) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    if (value && typeof value === "object" && typeof (value as Problem).code === "string") {
      return value as Problem;
    }
  } catch {
    // Not JSON: not a problem.
  }
  return undefined;
}

/** `Retry-After` in seconds: delta-seconds or an HTTP date (RFC 9110); undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}
