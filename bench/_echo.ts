/**
 * Shared by `bench:connections` and `bench:node`: one verified echo per connection, and a
 * process's resident memory.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { StoqConnection } from "../mod.ts";

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
