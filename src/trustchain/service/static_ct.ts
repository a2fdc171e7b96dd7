/**
 * A CA's transparency log over HTTP as C2SP static-ct-api (https://c2sp.org/static-ct-api), the
 * read path existing CT monitors and witnesses use:
 *
 * | path                               | content                                                    |
 * | ---------------------------------- | ---------------------------------------------------------- |
 * | `checkpoint`                       | the latest checkpoint: RFC 6962 note signature, Falcon line |
 * | `tile/<L>/<N>[.p/<W>]`             | 256 (or `W`) Merkle tree hashes at level `L`               |
 * | `tile/data/<N>[.p/<W>]`            | 256 (or `W`) `TileLeaf` entries                            |
 * | `issuer/<sha-256 hex>`             | the issuing (root) certificate, DER                        |
 *
 * {@linkcode staticCtHandler} is a plain `(Request) => Promise<Response>`, so a node can mount it
 * in its own HTTP server (under any prefix); {@linkcode serveStaticCt} runs it alone on an IPv6
 * address. Only the committed tree (the latest tree head the CA stored) is served.
 *
 * @module
 */

import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { StoqError } from "../../errors.ts";
import type { CertificateAuthority } from "../ca.ts";
import { buf, bytesToHex, concatBytes } from "../core/_bytes.ts";

/** Options for {@linkcode staticCtHandler}. */
export interface StaticCtOptions {
  /**
   * The path the log is mounted at (the static-ct-api monitoring prefix); requests outside it get
   * 404.
   * @default {"/"}
   */
  prefix?: string;
  /**
   * How long a published checkpoint is served again while the tree has not grown, in ms.
   * @default {5_000}
   */
  checkpointMaxAgeMs?: number;
  /**
   * The clock for checkpoint reuse.
   * @default {Date.now}
   */
  now?: () => number;
}

const TILE_WIDTH = 256;
const IMMUTABLE = "public, max-age=31536000, immutable";

/** Parses `<N>[.p/<W>]` in tlog-tiles form (`x001/x234/067`); `undefined` when not canonical. */
function _parseIndex(
  path: string,
): { index: number; width: number } | undefined {
  const m = /^((?:x\d{3}\/)*)(\d{3})(?:\.p\/([1-9]\d{0,2}))?$/.exec(path);
  if (!m) return undefined;
  const index = Number(`${m[1].replaceAll(/[x/]/g, "")}${m[2]}`);
  // A partial tile has 1..255 entries; `.p/256` is not a name.
  const width = m[3] === undefined ? TILE_WIDTH : Number(m[3]);
  if (m[3] !== undefined && width >= TILE_WIDTH) return undefined;
  if (!Number.isSafeInteger(index) || width > TILE_WIDTH) return undefined;
  // Only the canonical encoding names a tile (no superfluous leading groups).
  return _formatIndex(index) === `${m[1]}${m[2]}`
    ? { index, width }
    : undefined;
}

/**
 * The tlog-tiles path encoding of a tile index: 3-digit groups, all but the last prefixed `x`.
 *
 * @param index The tile index.
 * @returns E.g. `x001/x234/067` for 1234067.
 */
function _formatIndex(index: number): string {
  const groups: string[] = [];
  let n = index;
  do {
    groups.unshift(String(n % 1000).padStart(3, "0"));
    n = Math.floor(n / 1000);
  } while (n > 0);
  return groups.map((g, i) => i < groups.length - 1 ? `x${g}` : g).join("/");
}

function _response(
  status: number,
  body: BodyInit | null,
  headers: Record<string, string>,
  head: boolean,
): Response {
  return new Response(head ? null : body, { status, headers });
}

function _text(status: number, message: string, head: boolean): Response {
  return _response(status, `${message}\n`, {
    "content-type": "text/plain; charset=utf-8",
    "cache-control": "no-store",
  }, head);
}

/**
 * The static-ct-api read path of a CA's log as an HTTP handler.
 *
 * @param ca The CA whose log to serve (it must stay open while the handler is used).
 * @param opts Mount prefix and checkpoint reuse.
 * @returns A handler for `Deno.serve` or any router: `GET`/`HEAD` only.
 *
 * @example Reading the checkpoint through the handler
 * ```ts
 * import { CertificateAuthority, MemoryCaStore, staticCtHandler } from "../mod.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * await ca.provision("app");
 * const handler = staticCtHandler(ca, { prefix: "/logs/demo/" });
 * const res = await handler(new Request("http://[::1]/logs/demo/checkpoint"));
 * console.log((await res.text()).split("\n")[1]); // "1"
 * ```
 */
export function staticCtHandler(
  ca: CertificateAuthority,
  opts: StaticCtOptions = {},
): (request: Request) => Promise<Response> {
  if (typeof ca?.logEntries !== "function") {
    throw new TypeError(
      `Cannot serve a log as 'ca' must be a CertificateAuthority: current value is ${ca}`,
    );
  }
  const prefix = opts.prefix ?? "/";
  if (!prefix.startsWith("/") || !prefix.endsWith("/")) {
    throw new TypeError(
      `Cannot serve a log as 'prefix' must start and end with '/': current value is ${prefix}`,
    );
  }
  const maxAge = opts.checkpointMaxAgeMs ?? 5_000;
  const now = opts.now ?? Date.now;
  const issuerHex = bytesToHex(sha256(ca.rootDer));
  let published: { size: number; at: number; note: string } | undefined;

  const checkpoint = async (head: boolean): Promise<Response> => {
    const size = ca.treeSize;
    if (
      !published || published.size !== size || now() - published.at > maxAge
    ) {
      published = { size, at: now(), note: await ca.checkpoint() };
    }
    return _response(200, published.note, {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-cache",
    }, head);
  };

  const hashTile = async (
    level: number,
    index: number,
    width: number,
    head: boolean,
  ): Promise<Response> => {
    const nodes = Math.floor(ca.treeSize / TILE_WIDTH ** level);
    if (index * TILE_WIDTH + width > nodes) {
      return _text(404, "No such tile in the published tree", head);
    }
    const hashes = await ca.log.hashTile(8 * level, index * TILE_WIDTH, width);
    return _response(200, buf(concatBytes(...hashes)), {
      "content-type": "application/octet-stream",
      "cache-control": IMMUTABLE,
    }, head);
  };

  const dataTile = async (
    index: number,
    width: number,
    head: boolean,
  ): Promise<Response> => {
    const start = index * TILE_WIDTH;
    if (start + width > ca.treeSize) {
      return _text(404, "No such data tile in the published tree", head);
    }
    const entries = await ca.logEntries(start, start + width);
    return _response(200, buf(concatBytes(...entries)), {
      "content-type": "application/octet-stream",
      "cache-control": IMMUTABLE,
    }, head);
  };

  return async (request) => {
    const head = request.method === "HEAD";
    if (request.method !== "GET" && !head) {
      return new Response("Only GET and HEAD are served\n", {
        status: 405,
        headers: { allow: "GET, HEAD", "content-type": "text/plain" },
      });
    }
    let path: string;
    try {
      path = new URL(request.url).pathname;
    } catch {
      return _text(400, "Bad request URL", head);
    }
    if (!path.startsWith(prefix)) return _text(404, "Not a log path", head);
    const rest = path.slice(prefix.length);
    try {
      if (rest === "checkpoint") return await checkpoint(head);
      const issuer = /^issuer\/([0-9a-f]{64})$/.exec(rest);
      if (issuer) {
        return issuer[1] === issuerHex
          ? _response(200, buf(ca.rootDer), {
            "content-type": "application/pkix-cert",
            "cache-control": IMMUTABLE,
          }, head)
          : _text(404, "Unknown issuer", head);
      }
      const data = /^tile\/data\/(.+)$/.exec(rest);
      if (data) {
        const at = _parseIndex(data[1]);
        return at
          ? await dataTile(at.index, at.width, head)
          : _text(404, "Bad tile index", head);
      }
      const tile = /^tile\/(0|[1-5])\/(.+)$/.exec(rest);
      if (tile) {
        const at = _parseIndex(tile[2]);
        return at
          ? await hashTile(Number(tile[1]), at.index, at.width, head)
          : _text(404, "Bad tile index", head);
      }
      return _text(404, "Not a static-ct-api path", head);
    } catch (err) {
      if (err instanceof StoqError && err.code === "CLOSED") {
        return _text(503, "The log is closed", head);
      }
      throw err;
    }
  };
}

/** Options for {@linkcode serveStaticCt}. */
export interface ServeStaticCtOptions extends StaticCtOptions {
  /**
   * The IPv6 address to listen on.
   * @default {"::1"}
   */
  hostname?: string;
  /**
   * The TCP port; 0 picks a free one.
   * @default {0}
   */
  port?: number;
  /**
   * Stops the server when aborted.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * Serves a CA's log as static-ct-api over HTTP on an IPv6 address.
 *
 * @param ca The CA.
 * @param opts Address, port, prefix and an abort signal.
 * @returns The running server (`addr` has the port; `shutdown()` stops it).
 * @throws {StoqError} `IPV4_REJECTED` for an IPv4 address; `INVALID_ARGUMENT` for anything that
 * is not an IPv6 literal.
 *
 * @example Serving on an ephemeral port
 * ```ts
 * import { CertificateAuthority, MemoryCaStore, serveStaticCt } from "../mod.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * await ca.provision("app");
 * await using server = serveStaticCt(ca, { hostname: "::1", port: 0 });
 * const res = await fetch(`http://[::1]:${server.addr.port}/tile/0/000.p/1`);
 * console.log((await res.bytes()).length); // 32
 * ```
 */
export function serveStaticCt(
  ca: CertificateAuthority,
  opts: ServeStaticCtOptions = {},
): Deno.HttpServer<Deno.NetAddr> {
  const hostname = opts.hostname ?? "::1";
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(hostname) || /::ffff:/i.test(hostname)) {
    throw new StoqError(
      "IPV4_REJECTED",
      `STOQ is IPv6-only: '${hostname}' is an IPv4 address. Use an IPv6 address such as ::1 or ::`,
    );
  }
  if (!hostname.includes(":")) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot serve the log as 'hostname' must be an IPv6 literal: current value is ${hostname}`,
    );
  }
  const handler = staticCtHandler(ca, opts);
  return Deno.serve({
    hostname,
    port: opts.port ?? 0,
    signal: opts.signal,
    onListen: () => {},
  }, handler);
}
