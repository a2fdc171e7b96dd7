/**
 * `deno task bench:compare`: STOQ beside Deno's built-in QUIC on the same payload, measured in
 * one run with alternating rounds so machine noise hits both alike. Sender in this process,
 * receiver in its own (it hashes every byte); one connection, one stream, 64 KiB writes.
 * Prints the median Gbit/s of each and their ratio; the last line reads
 * `STOQ/Deno ratio: <number>`.
 *
 * Env: STOQ_BENCH_MIB (payload per round, default 256), STOQ_BENCH_ROUNDS (default 5).
 *
 * @module
 */

import {
  denoUpload,
  gbps,
  makePayload,
  startReceiver,
  stoqUpload,
} from "./_throughput.ts";

const mib = Number(Deno.env.get("STOQ_BENCH_MIB") ?? 256);
const rounds = Number(Deno.env.get("STOQ_BENCH_ROUNDS") ?? 5);
const payload = makePayload(mib * 1024 * 1024);
const median = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

await using stoqReceiver = await startReceiver("stoq");
await using denoReceiver = await startReceiver("deno");

console.log(
  `${mib} MiB per round, ${rounds} rounds; one connection, one stream, 64 KiB writes; receiver in its own process, SHA-256 of every byte checked`,
);
// Warm-up: JIT, library loading, first-connection costs.
const warm = makePayload(16 * 1024 * 1024);
await stoqUpload(stoqReceiver, warm);
await denoUpload(denoReceiver, warm);

const stoq: number[] = [];
const deno: number[] = [];
for (let r = 0; r < rounds; r++) {
  stoq.push(gbps(payload.size, await stoqUpload(stoqReceiver, payload)));
  deno.push(gbps(payload.size, await denoUpload(denoReceiver, payload)));
  console.log(
    `round ${r + 1}: STOQ ${stoq[r].toFixed(2)} Gbit/s, Deno QUIC ${
      deno[r].toFixed(2)
    } Gbit/s`,
  );
}
const s = median(stoq);
const d = median(deno);
console.log(`STOQ median: ${s.toFixed(2)} Gbit/s`);
console.log(`Deno QUIC median: ${d.toFixed(2)} Gbit/s`);
console.log(`STOQ/Deno ratio: ${(s / d).toFixed(2)}`);
