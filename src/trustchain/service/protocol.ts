/**
 * The TrustChain service protocol, `trustchain/1` (the ALPN), shared by server and client: the
 * method table, parameter checking and the wire codec.
 *
 * One request per bidirectional stream. The client writes one UTF-8 JSON object
 * `{ "method": string, ...params }` and finishes its side; the service answers with one JSON
 * object, `{ "ok": true, "result": … }` or
 * `{ "ok": false, "error": { "code": StoqErrorCode, "message": string } }`, and finishes its side.
 * Binary values (DER, hashes) are base64; times are milliseconds since the epoch.
 *
 * | method        | params                                             | result                                |
 * | ------------- | -------------------------------------------------- | ------------------------------------- |
 * | `info`        |                                                    | {@linkcode ServiceInfo}               |
 * | `issue`       | `csr` (base64 DER or PEM), `lifetimeMs?`, `token?` | {@linkcode IssueResult}               |
 * | `status`      | `serial`                                           | `SignedStatus`                        |
 * | `proof`       | `serial`                                           | `TransparencyProof` or `null`         |
 * | `bundle`      |                                                    | `SignedTrustBundle` or `null`         |
 * | `treeHead`    |                                                    | the latest signed tree head or `null` |
 * | `checkpoint`  |                                                    | a checkpoint co-signed with Falcon-512 |
 * | `consistency` | `first`, `second?`                                 | base64 RFC 9162 consistency proof     |
 * | `crl`         |                                                    | the CRL, PEM                          |
 *
 * Bad requests get `REQUEST_INVALID` (not JSON, unknown method, bad parameter, larger than the
 * limit); refused issuance `UNAUTHORIZED`; policy refusals keep the CA's codes
 * (`NAME_NOT_ALLOWED`, `CSR_BAD_SIGNATURE`, …); anything unexpected `INTERNAL_ERROR`.
 *
 * @module
 */

import { StoqError, type StoqErrorCode } from "../../errors.ts";
import type { TransparencyProof } from "../core/ct_log.ts";
import type {
  FederationMember,
  SignedTrustBundle,
} from "../core/federation.ts";
import type { SignedStatus } from "../core/status.ts";
import { concatBytes } from "../core/_bytes.ts";

/** The ALPN protocol of the TrustChain service. */
export const TRUSTCHAIN_ALPN = "trustchain/1";

/** The largest request a service accepts by default, in bytes. */
export const DEFAULT_MAX_REQUEST = 64 * 1024;
/** The largest answer a client reads, in bytes. */
export const MAX_RESPONSE = 4 * 1024 * 1024;

/** A parameter's type: `?` marks it optional. */
type Kind = "string" | "string?" | "int" | "int?";

/** The methods and their parameters: the one list server and client are built from. */
export const METHODS = {
  info: {},
  issue: { csr: "string", lifetimeMs: "int?", token: "string?" },
  status: { serial: "string" },
  proof: { serial: "string" },
  bundle: {},
  treeHead: {},
  checkpoint: {},
  consistency: { first: "int", second: "int?" },
  crl: {},
} as const satisfies Record<string, Record<string, Kind>>;

/** A method name. */
export type Method = keyof typeof METHODS;

type _Value<K> = K extends "string" ? string
  : K extends "string?" ? string | undefined
  : K extends "int" ? number
  : number | undefined;

/** The parameters of a method. */
export type Params<M extends Method> = {
  -readonly [P in keyof (typeof METHODS)[M]]: _Value<(typeof METHODS)[M][P]>;
};

/** The service's `info` answer. */
export interface ServiceInfo {
  /** The CA name (its federation member name). */
  name: string;
  /** The domain bare app names get. */
  domain: string;
  /** The CA as a federation member. */
  member: FederationMember;
  /** The latest signed tree head, if anything was issued. */
  treeHead: string | null;
}

/** The service's `issue` answer. */
export interface IssueResult {
  /** Serial (hex). */
  serial: string;
  /** Base64 DER: leaf, then root. */
  chain: string[];
  /** The DNS names. */
  names: string[];
  /** Validity start, ms since the epoch. */
  notBefore: number;
  /** Validity end, ms since the epoch. */
  notAfter: number;
  /** The transparency proof. */
  proof: TransparencyProof;
}

/** What each method answers. */
export interface Results {
  /** See {@linkcode ServiceInfo}. */
  info: ServiceInfo;
  /** See {@linkcode IssueResult}. */
  issue: IssueResult;
  /** A signed status. */
  status: SignedStatus;
  /** A proof, or `null` for an unknown serial. */
  proof: TransparencyProof | null;
  /** The bundle, or `null`. */
  bundle: SignedTrustBundle | null;
  /** The latest tree head, or `null`. */
  treeHead: string | null;
  /** A Falcon-co-signed checkpoint. */
  checkpoint: string;
  /** Base64 proof nodes. */
  consistency: string[];
  /** The CRL, PEM. */
  crl: string;
}

function _bad(message: string): StoqError {
  return new StoqError("REQUEST_INVALID", message);
}

function _check(method: string, key: string, kind: Kind, v: unknown): void {
  if (v === undefined && kind.endsWith("?")) return;
  if (kind.startsWith("string")) {
    if (typeof v !== "string" || v.length === 0 || v.length > 65536) {
      throw _bad(
        `Cannot handle ${method} as '${key}' must be a non-empty string: current value is ${
          JSON.stringify(v)?.slice(0, 40)
        }`,
      );
    }
  } else if (!Number.isSafeInteger(v) || (v as number) < 0) {
    throw _bad(
      `Cannot handle ${method} as '${key}' must be a non-negative integer: current value is ${
        JSON.stringify(v)?.slice(0, 40)
      }`,
    );
  }
}

/**
 * Checks a decoded request against the method table.
 *
 * @param request The JSON value the client sent.
 * @returns The method and its checked parameters.
 * @throws {StoqError} `REQUEST_INVALID` naming what is wrong.
 */
export function parseRequest(
  request: unknown,
): { method: Method; params: Record<string, unknown> } {
  if (
    typeof request !== "object" || request === null || Array.isArray(request)
  ) {
    throw _bad("The request must be a JSON object with a 'method'");
  }
  const req = request as Record<string, unknown>;
  const method = req.method;
  if (typeof method !== "string" || !Object.hasOwn(METHODS, method)) {
    throw _bad(
      `Unknown method ${JSON.stringify(method)?.slice(0, 40)}: use ${
        Object.keys(METHODS).join(", ")
      }`,
    );
  }
  const spec: Record<string, Kind> = METHODS[method as Method];
  const params: Record<string, unknown> = {};
  for (const [key, kind] of Object.entries(spec)) {
    _check(method, key, kind, req[key]);
    params[key] = req[key];
  }
  return { method: method as Method, params };
}

/**
 * Encodes a request.
 *
 * @param method The method.
 * @param params Its parameters (undefined ones are left out).
 * @returns The bytes to write.
 */
export function encodeRequest<M extends Method>(
  method: M,
  params: Params<M>,
): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ method, ...params }));
}

/**
 * Reads a whole stream, refusing more than `limit` bytes.
 *
 * @param readable The stream.
 * @param limit The most bytes accepted.
 * @returns The bytes.
 * @throws {StoqError} `REQUEST_INVALID` past the limit; the stream's own errors.
 */
export async function readAll(
  readable: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = readable.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel(0).catch(() => {});
        throw _bad(
          `The message exceeds ${limit} bytes: send one request per stream, within the limit`,
        );
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return concatBytes(...chunks);
}

/**
 * Writes `data` and finishes the stream.
 *
 * @param writable The stream.
 * @param data The bytes.
 */
export async function writeAll(
  writable: WritableStream<Uint8Array>,
  data: Uint8Array,
): Promise<void> {
  const writer = writable.getWriter();
  try {
    await writer.write(data);
    await writer.close();
  } finally {
    writer.releaseLock();
  }
}

/**
 * The answer for a request that succeeded.
 *
 * @param result The result.
 * @returns The bytes to write.
 */
export function encodeResult(result: unknown): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({ ok: true, result: result ?? null }),
  );
}

/**
 * The answer for a request that failed: StoqErrors keep their code, bad arguments become
 * `REQUEST_INVALID`, anything else `INTERNAL_ERROR` (without its details).
 *
 * @param err What went wrong.
 * @returns The bytes to write.
 */
export function encodeError(err: unknown): Uint8Array {
  let error: { code: StoqErrorCode; message: string };
  if (err instanceof StoqError) {
    error = { code: err.code, message: err.message };
  } else if (err instanceof TypeError || err instanceof RangeError) {
    error = { code: "REQUEST_INVALID", message: err.message };
  } else {
    error = {
      code: "INTERNAL_ERROR",
      message: "The CA service failed on this request: see its logs",
    };
  }
  return new TextEncoder().encode(JSON.stringify({ ok: false, error }));
}

/**
 * Decodes an answer.
 *
 * @param bytes What the service sent.
 * @returns The result.
 * @throws {StoqError} The service's error, with its code; `INTERNAL_ERROR` for an answer that is
 *   not JSON.
 */
export function decodeReply<T>(bytes: Uint8Array): T {
  let reply: {
    ok?: boolean;
    result?: unknown;
    error?: { code?: string; message?: string };
  };
  try {
    reply = JSON.parse(new TextDecoder().decode(bytes));
  } catch (cause) {
    throw new StoqError(
      "INTERNAL_ERROR",
      "The CA service sent an answer that is not JSON",
      { cause },
    );
  }
  if (reply?.ok === true) return reply.result as T;
  const code = typeof reply?.error?.code === "string"
    ? reply.error.code as StoqErrorCode
    : "INTERNAL_ERROR";
  throw new StoqError(
    code,
    String(reply?.error?.message ?? "The CA service refused the request"),
  );
}

/**
 * Decodes a request's bytes as UTF-8 JSON.
 *
 * @param bytes The request.
 * @returns The JSON value.
 * @throws {StoqError} `REQUEST_INVALID` when it is not UTF-8 JSON.
 */
export function decodeRequest(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw _bad("The request is not UTF-8 JSON: send one JSON object");
  }
}
