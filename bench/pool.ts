/**
 * `deno task bench:pool`: what `phoenix.connect()` costs when the pool has a live connection to
 * the peer (pooled) against a first connect (cold: a new app, so a full TLS handshake with
 * certificate and transparency checks on both sides), and a reconnect after the connection
 * closed (resumed session). The peer runs in its own process. Last line:
 * `pooled/cold connect speedup: <number>` (p50 over p50).
 *
 * Env: STOQ_POOL_COLD (cold samples, default 30), STOQ_POOL_POOLED (default 2000).
 *
 * @module
 */

import { Phoenix } from "../mod.ts";
import { median, startPeer } from "./_phoenix.ts";

const COLD = Number(Deno.env.get("STOQ_POOL_COLD") ?? 30);
const POOLED = Number(Deno.env.get("STOQ_POOL_POOLED") ?? 2000);

await using peer = await startPeer();
const ms = (t0: number) => performance.now() - t0;

const cold: number[] = [];
for (let i = 0; i < COLD + 3; i++) {
  await using app = await Phoenix.create(`cold-${i}`, { listen: false });
  const t0 = performance.now();
  const conn = await app.connect(peer.target);
  if (i === 0) await conn.sendData(Uint8Array.of(1)); // the peer accepted our certificate
  if (i >= 3) cold.push(ms(t0)); // the first ones warm up the JIT
}

await using app = await Phoenix.create("pooled", { listen: false });
// One exchange: the peer accepted us, and the session ticket has arrived.
await (await app.connect(peer.target)).sendData(Uint8Array.of(1));
const pooled: number[] = [];
for (let i = 0; i < POOLED; i++) {
  const t0 = performance.now();
  await app.connect(peer.target);
  pooled.push(ms(t0));
}

const resumed: number[] = [];
for (let i = 0; i < COLD; i++) {
  for (const conn of app.connections(peer.target)) {
    conn.close();
    await conn.finished;
  }
  const t0 = performance.now();
  const conn = await app.connect(peer.target);
  resumed.push(ms(t0));
  await conn.sendData(Uint8Array.of(1)); // and the next ticket
}
const h = app.stats().handshakes;

const show = (name: string, xs: number[]) =>
  console.log(
    `${name.padEnd(8)} p50 ${median(xs).toFixed(3)} ms  p99 ${
      [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)].toFixed(3)
    } ms  (${xs.length} connects)`,
  );
show("cold", cold);
show("resumed", resumed);
show("pooled", pooled);
console.log(
  `the pooled app counted ${h.cold.count} cold, ${h.resumed.count} resumed, ${h.pooled.count} pooled connects`,
);
console.log(
  `pooled/cold connect speedup: ${(median(cold) / median(pooled)).toFixed(0)}`,
);
