/**
 * `deno task bench:compare`: STOQ beside Deno's built-in QUIC, and beside a C program over the
 * same libmsquic, on the same payload, measured in one run with alternating rounds so that
 * machine noise hits all alike. One connection, one stream, 64 KiB writes; the receiver hashes
 * every byte (SHA-256) and the sender checks it.
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

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

// The C baseline (bench/c_baseline.c), built with the dev certificates by `make bench-compare`.
const baselineBin = new URL("../build/c_baseline", import.meta.url).pathname;
const certDir = new URL("../build/dev-certs", import.meta.url).pathname;

/** One C-baseline upload of `mib` MiB between two processes, or undefined when not built. */
async function cBaseline(): Promise<number | undefined> {
  try {
    await Deno.stat(baselineBin);
    await Deno.stat(`${certDir}/cert.pem`);
  } catch {
    return undefined;
  }
  const port = String(20000 + Math.floor(Math.random() * 20000));
  const server = new Deno.Command(baselineBin, {
    args: ["server", `${certDir}/cert.pem`, `${certDir}/key.pem`, port],
    stdout: "piped",
  }).spawn();
  try {
    const reader = server.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    while (!text.includes("listening")) {
      const { value, done } = await reader.read();
      if (done) return undefined;
      text += value;
    }
    reader.releaseLock();
    const out = await new Deno.Command(baselineBin, {
      args: ["client", port, String(mib)],
    })
      .output();
    const m = /([\d.]+) Gbit\/s/.exec(new TextDecoder().decode(out.stdout));
    return m ? Number(m[1]) : undefined;
  } finally {
    server.kill();
    await server.status;
  }
}

interface Medians {
  stoq: number;
  deno: number;
  c?: number;
}

async function measure(layout: Layout): Promise<Medians> {
  await using stoqReceiver = await startReceiver("stoq", layout);
  await using denoReceiver = await startReceiver("deno", layout);
  // Warm-up: JIT, library loading, first-connection costs.
  await stoqUpload(stoqReceiver, warm);
  await denoUpload(denoReceiver, warm);
  const stoq: number[] = [];
  const deno: number[] = [];
  const c: number[] = [];
  for (let r = 0; r < rounds; r++) {
    stoq.push(gbps(payload.size, await stoqUpload(stoqReceiver, payload)));
    deno.push(gbps(payload.size, await denoUpload(denoReceiver, payload)));
    // The C baseline always runs as two processes, so it belongs beside that layout.
    const base = layout === "process" ? await cBaseline() : undefined;
    if (base !== undefined) c.push(base);
    const cText = base === undefined
      ? ""
      : `, C baseline ${base.toFixed(2)} Gbit/s`;
    console.log(
      `  ${layout} round ${r + 1}: STOQ ${stoq[r].toFixed(2)} Gbit/s, ` +
        `Deno QUIC ${deno[r].toFixed(2)} Gbit/s${cText}`,
    );
  }
  return {
    stoq: median(stoq),
    deno: median(deno),
    c: c.length > 0 ? median(c) : undefined,
  };
}

function report(name: string, m: Medians): void {
  console.log(
    `${name}: STOQ ${m.stoq.toFixed(2)} Gbit/s, Deno QUIC ${
      m.deno.toFixed(2)
    } Gbit/s, ` +
      `STOQ/Deno ${(m.stoq / m.deno).toFixed(2)}` +
      (m.c === undefined
        ? ""
        : `; C baseline ${m.c.toFixed(2)} Gbit/s, STOQ/C ${
          (m.stoq / m.c).toFixed(2)
        }`),
  );
}

console.log(
  `${mib} MiB per round, ${rounds} rounds; one connection, one stream, 64 KiB writes; ` +
    `SHA-256 of every byte checked`,
);
const inProcess = await measure("in-process");
const ownProcess = await measure("process");
report("receiver in the sender's process (medians)", inProcess);
report("receiver in its own process (medians)", ownProcess);
console.log(`STOQ median: ${ownProcess.stoq.toFixed(2)} Gbit/s`);
console.log(`Deno QUIC median: ${ownProcess.deno.toFixed(2)} Gbit/s`);
console.log(
  `STOQ/Deno ratio: ${(ownProcess.stoq / ownProcess.deno).toFixed(2)}`,
);
