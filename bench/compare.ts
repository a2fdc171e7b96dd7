/**
 * `deno task bench:compare`: the C baseline over the same libmsquic (bench/c_baseline.c), STOQ
 * and Deno's built-in QUIC on the same scenarios, measured in one run in rounds, with who goes
 * first rotating, so that machine noise hits all alike. Each server runs in its own process
 * (as on two hosts); the STOQ and Deno clients run in this process, the C client in its own.
 * Every payload byte is hashed (SHA-256) by its receiver and checked, on all three.
 *
 * Scenarios, one connection each: upload and download with 64 KiB and with 1 MiB writes, and
 * 100 concurrent streams uploading (64 KiB writes). Prints every round, a table of medians in
 * Gbit/s, the ratios, and last `STOQ/C ratio: <n>` (upload, 64 KiB writes) and
 * `STOQ/Deno ratio: <n>` (the same row).
 *
 * Env: STOQ_BENCH_MIB (payload per scenario and round, default 256), STOQ_BENCH_ROUNDS (default
 * 5), STOQ_BENCH_ONLY (comma-separated scenario names to run), STOQ_SERVER_FLAGS (extra
 * `deno run` flags for the server processes, e.g. --cpu-prof).
 *
 * @module
 */

import {
  cRun,
  denoRun,
  gbps,
  type Scenario,
  type Server,
  startCServer,
  startServer,
  stoqRun,
  totalBytes,
} from "./_throughput.ts";

const MIB = 1024 * 1024;
const mib = Number(Deno.env.get("STOQ_BENCH_MIB") ?? 256);
const rounds = Number(Deno.env.get("STOQ_BENCH_ROUNDS") ?? 5);
const only = Deno.env.get("STOQ_BENCH_ONLY")?.split(",");

const scenarios: [string, Scenario][] = ([
  ["upload 64 KiB", { kind: "up", bytes: mib * MIB, write: 64 * 1024 }],
  ["upload 1 MiB", { kind: "up", bytes: mib * MIB, write: MIB }],
  ["download 64 KiB", { kind: "down", bytes: mib * MIB, write: 64 * 1024 }],
  ["download 1 MiB", { kind: "down", bytes: mib * MIB, write: MIB }],
  ["100 streams", {
    kind: "streams",
    bytes: mib * MIB,
    write: 64 * 1024,
    streams: 100,
  }],
] as [string, Scenario][]).filter(([name]) => !only || only.includes(name));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

await using stoqServer = await startServer("stoq");
await using denoServer = await startServer("deno");
const cServer: Server | undefined = await startCServer();
try {
  type Row = { c: number[]; stoq: number[]; deno: number[] };
  const rows = new Map<string, Row>(
    scenarios.map(([name]) => [name, { c: [], stoq: [], deno: [] }]),
  );
  console.log(
    `${mib} MiB per scenario and round, ${rounds} rounds, every byte SHA-256-checked; ` +
      `C baseline ${
        cServer ? "included" : "not built (make bench-compare builds it)"
      }`,
  );
  // Warm-up: JIT, library loading, first-connection costs.
  const warm: Scenario = { kind: "up", bytes: 32 * MIB, write: 64 * 1024 };
  await stoqRun(stoqServer, warm);
  await denoRun(denoServer, warm);
  for (let r = 1; r <= rounds; r++) {
    for (const [name, s] of scenarios) {
      const row = rows.get(name)!;
      const bytes = totalBytes(s);
      // Who goes first rotates from round to round, so that what a run leaves behind (the
      // peer's buffers, the scheduler's state) does not favour one side.
      let c: number | undefined, stoq = 0, deno = 0;
      const runs = [
        async () => c = cServer ? await cRun(cServer, s) : undefined,
        async () => stoq = gbps(bytes, await stoqRun(stoqServer, s)),
        async () => deno = gbps(bytes, await denoRun(denoServer, s)),
      ];
      for (let i = 0; i < runs.length; i++) {
        await runs[(i + r - 1) % runs.length]();
      }
      if (c !== undefined) row.c.push(c);
      row.stoq.push(stoq);
      row.deno.push(deno);
      console.log(
        `  round ${r} ${name}: ${
          c === undefined ? "" : `C ${c.toFixed(2)}, `
        }STOQ ${stoq.toFixed(2)}, Deno ${deno.toFixed(2)} Gbit/s`,
      );
    }
  }
  const fmt = (xs: number[]) => xs.length ? median(xs).toFixed(2) : "—";
  const ratio = (a: number[], b: number[]) =>
    a.length && b.length ? (median(a) / median(b)).toFixed(2) : "—";
  console.log("\nmedians (Gbit/s)");
  console.log(
    "| scenario | C baseline | STOQ | Deno QUIC | STOQ/C | STOQ/Deno |",
  );
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const [name] of scenarios) {
    const row = rows.get(name)!;
    console.log(
      `| ${name} | ${fmt(row.c)} | ${fmt(row.stoq)} | ${fmt(row.deno)} | ${
        ratio(row.stoq, row.c)
      } | ${ratio(row.stoq, row.deno)} |`,
    );
  }
  const head = rows.get("upload 64 KiB");
  if (head) {
    console.log(`STOQ/C ratio: ${ratio(head.stoq, head.c)}`);
    console.log(`STOQ/Deno ratio: ${ratio(head.stoq, head.deno)}`);
  }
} finally {
  await cServer?.[Symbol.asyncDispose]();
}
