/**
 * `deno task bench:phoenix`: aggregate throughput of Phoenix sends to a peer app in its own
 * process, all on one pooled connection unless said otherwise:
 *
 * - one `sendData` message of the whole payload (the single-stream figure);
 * - the same payload split over 100, 500 and 1,000 concurrent `streamData` streams;
 * - `sendMultiplexed` of the payload over 4 connections, and over 1.
 *
 * Each figure is the median of several rounds; every send resolves once the peer has read it
 * all, so the time covers delivery. Last line: `multi-stream/single-stream ratio: <number>`
 * (1,000 streams over one `sendData`).
 *
 * Env: STOQ_PHOENIX_MIB (payload, default 256), STOQ_PHOENIX_ROUNDS (default 5),
 * STOQ_PHOENIX_HIGH_PERFORMANCE=1 (both apps use the high-performance profile).
 *
 * @module
 */

import { Phoenix } from "../mod.ts";
import { median, startPeer } from "./_phoenix.ts";

const MIB = Number(Deno.env.get("STOQ_PHOENIX_MIB") ?? 256);
const ROUNDS = Number(Deno.env.get("STOQ_PHOENIX_ROUNDS") ?? 5);
const HIGH = Deno.env.get("STOQ_PHOENIX_HIGH_PERFORMANCE") === "1";
const SIZE = MIB * 1024 * 1024;

await using peer = await startPeer(HIGH);
const payload = new Uint8Array(SIZE);
crypto.getRandomValues(payload.subarray(0, 65536));
for (let off = 65536; off < SIZE; off *= 2) {
  payload.copyWithin(off, 0, Math.min(off, SIZE - off));
}

const options = { listen: false as const, highPerformance: HIGH };
await using app = await Phoenix.create("bench-sender", options);
const conn = await app.connect(peer.target);
await conn.sendData(payload.subarray(0, 1024 * 1024)); // warm up: windows open, JIT warm

/** Gbit/s of one round of `send`, the median of ROUNDS. */
async function measure(send: () => Promise<unknown>): Promise<number> {
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    await send();
    rates.push((SIZE * 8) / ((performance.now() - t0) * 1e6));
  }
  return median(rates);
}

/** The payload as `n` streams of consecutive slices, all sent at once. */
function streams(n: number): () => Promise<unknown> {
  const part = Math.ceil(SIZE / n);
  return () =>
    Promise.all(
      Array.from({ length: n }, (_, i) => {
        const slice = payload.subarray(
          i * part,
          Math.min(SIZE, (i + 1) * part),
        );
        let sent = false;
        return conn.streamData(() => {
          if (sent) return null;
          sent = true;
          return slice;
        });
      }),
    );
}

const rows: [string, number][] = [];
const row = (name: string, gbps: number) => {
  rows.push([name, gbps]);
  console.log(`${name.padEnd(34)} ${gbps.toFixed(2)} Gbit/s`);
};

console.log(
  `payload ${MIB} MiB, ${ROUNDS} rounds each (median), profile ${
    HIGH ? "high-performance" : "default"
  }`,
);
const single = await measure(() => conn.sendData(payload));
row("sendData, 1 stream", single);
let thousand = 0;
for (const n of [100, 500, 1000]) {
  const gbps = await measure(streams(n));
  row(`streamData, ${n} concurrent streams`, gbps);
  if (n === 1000) thousand = gbps;
}
for (const n of [4, 1]) {
  await using multi = await Phoenix.create(`bench-multiplex-${n}`, options);
  await multi.enableMultiplexing(peer.target, n);
  await multi.sendMultiplexed(peer.target, payload.subarray(0, 1024 * 1024));
  row(
    `sendMultiplexed, ${n} connection${n > 1 ? "s" : ""}`,
    await measure(() => multi.sendMultiplexed(peer.target, payload)),
  );
}
const [m4, m1] = [rows.at(-2)![1], rows.at(-1)![1]];
console.log(`multiplexed 4/1 connections ratio: ${(m4 / m1).toFixed(2)}`);
console.log(
  `multi-stream/single-stream ratio: ${(thousand / single).toFixed(2)}`,
);
