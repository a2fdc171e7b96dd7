/**
 * `deno task bench:compare`: STOQ beside Deno's built-in QUIC on the same payload, measured in
 * one run with alternating rounds so that machine noise hits both alike. One connection, one
 * stream, 64 KiB writes; the receiver hashes every byte (SHA-256) and the sender checks it.
 *
 * Two layouts: the receiver in its own process (as on two hosts; the headline) and the
 * receiver in the sender's process. The last line reads `STOQ/Deno ratio: <number>` for the
 * own-process layout.
 *
 * Env: STOQ_BENCH_MIB (payload per round, default 256), STOQ_BENCH_ROUNDS (default 5),
 * STOQ_RECEIVER_FLAGS (extra `deno run` flags for the receiver process, e.g. --cpu-prof).
 *
 * @module
 */

import {
  denoUpload,
  gbps,
  type Layout,
  makePayload,
  startReceiver,
  stoqUpload,
} from "./_throughput.ts";

const mib = Number(Deno.env.get("STOQ_BENCH_MIB") ?? 256);
const rounds = Number(Deno.env.get("STOQ_BENCH_ROUNDS") ?? 5);
const payload = makePayload(mib * 1024 * 1024);
const warm = makePayload(16 * 1024 * 1024);
const median = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function measure(
  layout: Layout,
): Promise<{ stoq: number; deno: number }> {
  await using stoqReceiver = await startReceiver("stoq", layout);
  await using denoReceiver = await startReceiver("deno", layout);
  // Warm-up: JIT, library loading, first-connection costs.
  await stoqUpload(stoqReceiver, warm);
  await denoUpload(denoReceiver, warm);
  const stoq: number[] = [];
  const deno: number[] = [];
  for (let r = 0; r < rounds; r++) {
    stoq.push(gbps(payload.size, await stoqUpload(stoqReceiver, payload)));
    deno.push(gbps(payload.size, await denoUpload(denoReceiver, payload)));
    console.log(
      `  ${layout} round ${r + 1}: STOQ ${
        stoq[r].toFixed(2)
      } Gbit/s, Deno QUIC ${deno[r].toFixed(2)} Gbit/s`,
    );
  }
  return { stoq: median(stoq), deno: median(deno) };
}

console.log(
  `${mib} MiB per round, ${rounds} rounds; one connection, one stream, 64 KiB writes; SHA-256 of every byte checked`,
);
const inProcess = await measure("in-process");
const ownProcess = await measure("process");
const line = (name: string, m: { stoq: number; deno: number }) =>
  console.log(
    `${name}: STOQ ${m.stoq.toFixed(2)} Gbit/s, Deno QUIC ${
      m.deno.toFixed(2)
    } Gbit/s, ratio ${(m.stoq / m.deno).toFixed(2)}`,
  );
line("receiver in the same process (medians)", inProcess);
line("receiver in its own process (medians)", ownProcess);
console.log(`STOQ median: ${ownProcess.stoq.toFixed(2)} Gbit/s`);
console.log(`Deno QUIC median: ${ownProcess.deno.toFixed(2)} Gbit/s`);
console.log(
  `STOQ/Deno ratio: ${(ownProcess.stoq / ownProcess.deno).toFixed(2)}`,
);
