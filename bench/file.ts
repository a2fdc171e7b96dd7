/**
 * `deno task bench:file`: a 1 GiB file from disk to disk over one connection on ::1, through
 * STOQ's io_uring file plane (`conn.sendFile()` → `stream.receiveToFile()`, the bytes never
 * enter JS) and through the C baseline doing the same over the same libmsquic (pread 1 MiB
 * at a time into buffers msquic sends from, pwrite on the receiving side; bench/c_baseline.c),
 * in rounds that alternate which goes first. Each received file is checked against the source
 * by SHA-256 (outside the timing) and removed, and the page cache is flushed (`sync`) between
 * runs. For reference each round also runs the C baseline's hashed memory-to-memory upload of
 * the same size.
 *
 * Prints every round, the medians, and last `file STOQ/C ratio: <n>` (against the C
 * file-to-file rate).
 *
 * Env: STOQ_FILE_MIB (file size, default 1024), STOQ_BENCH_ROUNDS (default 5).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { StoqEndpoint } from "../mod.ts";
import {
  cBaselineBin,
  cRun,
  gbps,
  type Server,
  startCServer,
} from "./_throughput.ts";

const MIB = 1024 * 1024;
const mib = Number(Deno.env.get("STOQ_FILE_MIB") ?? 1024);
const rounds = Number(Deno.env.get("STOQ_BENCH_ROUNDS") ?? 5);
const certDir = new URL("../build/dev-certs", import.meta.url).pathname;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function fileHash(path: string): Promise<string> {
  const h = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) h.update(chunk);
  return h.digest("hex");
}

async function sync(): Promise<void> {
  await new Deno.Command("sync").output();
}

const dir = await Deno.makeTempDir({ prefix: "stoq-bench-file-" });
const src = `${dir}/source.bin`;
{
  using file = await Deno.open(src, { write: true, create: true });
  const block = new Uint8Array(MIB);
  for (let i = 0; i < mib; i++) {
    for (let off = 0; off < MIB; off += 65536) {
      crypto.getRandomValues(block.subarray(off, off + 65536));
    }
    await file.write(block);
  }
}
const want = await fileHash(src);
await sync();

const child = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    "--unstable-net",
    new URL("./_file_server.ts", import.meta.url).pathname,
    `${certDir}/cert.pem`,
    `${certDir}/key.pem`,
  ],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
let first = "";
while (!first.includes("\n")) first += (await lines.read()).value ?? "";
lines.releaseLock();
child.stdout.cancel().catch(() => {});
const port = Number(first.trim());
const ca = await Deno.readTextFile(`${certDir}/ca.pem`);
const cServer: Server | undefined = await startCServer();

/** Seconds to move `src` into `dst` through STOQ's file plane. */
async function stoqFile(dst: string): Promise<number> {
  await using client = new StoqEndpoint();
  const conn = await client.connect({
    hostname: "::1",
    port,
    alpnProtocols: ["bench-file"],
    caCerts: [ca],
  });
  const control = await conn.createBidirectionalStream();
  const w = control.writable.getWriter();
  await w.write(new TextEncoder().encode(dst));
  await w.close();
  const t0 = performance.now();
  const sent = conn.sendFile(src);
  let reply = "";
  for await (const chunk of control.readable) {
    reply += new TextDecoder().decode(chunk);
  }
  const seconds = (performance.now() - t0) / 1000;
  const { bytes } = await sent;
  if (Number(reply) !== mib * MIB || bytes !== mib * MIB) {
    throw new Error(`STOQ moved ${bytes} bytes, the receiver wrote ${reply}`);
  }
  return seconds;
}

/** Gbit/s of the C baseline moving `src` into `dst`. */
async function cFile(dst: string): Promise<number> {
  const out = await new Deno.Command(cBaselineBin, {
    args: ["client", String(cServer!.port), "file", src, dst],
    stderr: "piped",
  }).output();
  const m = /([\d.]+) Gbit\/s/.exec(new TextDecoder().decode(out.stdout));
  if (!out.success || !m) {
    throw new Error(
      `the C baseline failed: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return Number(m[1]);
}

async function checked(dst: string, who: string): Promise<void> {
  const got = await fileHash(dst);
  if (got !== want) throw new Error(`${who}: ${dst} differs from the source`);
  await Deno.remove(dst);
  await sync();
}

try {
  const stoq: number[] = [];
  const c: number[] = [];
  const cUp: number[] = [];
  console.log(
    `${mib} MiB file, ${rounds} rounds; every received file SHA-256-checked; C baseline ${
      cServer ? "included" : "not built (make bench-file builds it)"
    }`,
  );
  for (let r = 1; r <= rounds; r++) {
    // Which side goes first alternates: a run right after the previous file's removal and
    // `sync` can meet the disk still settling (rates halved in some runs), and that must not
    // fall on one side only.
    const runStoq = async () => {
      const s = gbps(mib * MIB, await stoqFile(`${dir}/stoq.bin`));
      await checked(`${dir}/stoq.bin`, "STOQ");
      stoq.push(s);
    };
    const runC = async () => {
      if (!cServer) return;
      const g = await cFile(`${dir}/c.bin`);
      await checked(`${dir}/c.bin`, "C baseline");
      c.push(g);
    };
    if (r % 2 === 1) {
      await runC();
      await runStoq();
    } else {
      await runStoq();
      await runC();
    }
    let cText = "";
    if (cServer) {
      const up = await cRun(cServer, {
        kind: "up",
        bytes: mib * MIB,
        write: MIB,
      });
      cUp.push(up);
      cText = `C file ${c.at(-1)!.toFixed(2)}, C upload (memory, hashed) ${
        up.toFixed(2)
      }, `;
    }
    console.log(
      `  round ${r} (${r % 2 === 1 ? "C" : "STOQ"} first): ${cText}STOQ file ${
        stoq.at(-1)!.toFixed(2)
      } Gbit/s`,
    );
  }
  console.log(`STOQ file median: ${median(stoq).toFixed(2)} Gbit/s`);
  if (c.length > 0) {
    console.log(`C file median: ${median(c).toFixed(2)} Gbit/s`);
    console.log(
      `C upload (memory, hashed) median: ${median(cUp).toFixed(2)} Gbit/s`,
    );
    console.log(`file STOQ/C ratio: ${(median(stoq) / median(c)).toFixed(2)}`);
  }
} finally {
  await cServer?.[Symbol.asyncDispose]();
  child.kill();
  await child.status;
  await Deno.remove(dir, { recursive: true });
}
