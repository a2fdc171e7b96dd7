/**
 * Shared by `bench:connections` and `bench:node`: one verified echo per connection, and a
 * process's resident memory.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type {
  StoqConnection,
  StoqConnectOptions,
  StoqEndpoint,
} from "../mod.ts";

/** The resident memory of process `pid`, in bytes. */
export function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/**
 * One echo on a new stream of `conn`, checked by SHA-256; resolves with its milliseconds.
 *
 * @throws {Error} When what came back is not what was sent.
 */
export async function oneEcho(
  conn: StoqConnection,
  i: number,
): Promise<number> {
  const data = new TextEncoder().encode(`connection ${i} `.repeat(8));
  const t = performance.now();
  const { readable, writable } = await conn.createBidirectionalStream();
  const w = writable.getWriter();
  await w.write(data);
  await w.close();
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of readable) {
    hash.update(chunk);
    bytes += chunk.byteLength;
  }
  const ms = performance.now() - t;
  const want = createHash("sha256").update(data).digest("hex");
  if (bytes !== data.byteLength || hash.digest("hex") !== want) {
    throw new Error(`connection ${i}: the echo does not match what was sent`);
  }
  return ms;
}

/** Connections made by {@linkcode connectAll}, each after one verified echo. */
export interface Held {
  conns: StoqConnection[];
  /** Milliseconds of each connection's echo, in completion order. */
  echoMs: number[];
  /** Seconds to connect and echo them all. */
  seconds: number;
  /** How many of them have closed since (counted as it happens). */
  died(): number;
}

/**
 * Opens `count` connections with `options`, `inFlight` handshakes at a time, each doing one
 * echo checked by {@linkcode oneEcho}, and keeps them all open.
 */
export async function connectAll(
  client: StoqEndpoint,
  options: StoqConnectOptions,
  count: number,
  inFlight: number,
): Promise<Held> {
  const conns: StoqConnection[] = [];
  const echoMs: number[] = [];
  let died = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < count) {
      const i = next++;
      const conn = await client.connect(options);
      conn.closed.then(() => died++, () => died++);
      echoMs.push(await oneEcho(conn, i));
      conns.push(conn);
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  return { conns, echoMs, seconds, died: () => died };
}
