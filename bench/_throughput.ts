/**
 * The throughput harness shared by `bench:compare` and `deno bench`: one protocol spoken by a
 * STOQ server, a Deno QUIC server (each in its own process, as on two hosts) and the C baseline
 * (bench/c_baseline.c), and the clients that drive them from this process.
 *
 * Protocol: the client opens a bidirectional stream and sends one header line, then
 * - `up\n` + payload + FIN: the server hashes every byte (SHA-256) and answers `<bytes> <hex>`;
 * - `down <bytes> <write>\n` + FIN: the server sends `<bytes>` of payload in `<write>`-byte
 *   writes and FIN; the client hashes every byte and checks it.
 *
 * The payload is a 1 MiB pattern (16 blocks of 64 KiB from xorshift32, the same bytes the C
 * baseline makes) repeated, so every side knows the expected hash without sending it.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  makeDevCertificates,
  type StoqConnectOptions,
  StoqEndpoint,
  type StoqReceiveStream,
} from "../mod.ts";

/** 64 KiB, the common write size. */
export const BLOCK = 64 * 1024;
/** The repeating unit of the payload: 16 distinct 64 KiB blocks. */
export const PATTERN_SIZE = 16 * BLOCK;

/** The 1 MiB pattern: block k is xorshift32 output seeded with (k + 1) * 2654435761. */
export function makePattern(): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(PATTERN_SIZE);
  const words = new Uint32Array(out.buffer);
  for (let k = 0; k < 16; k++) {
    let x = Math.imul(k + 1, 2654435761) >>> 0;
    for (let i = 0; i < BLOCK / 4; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      words[k * (BLOCK / 4) + i] = x;
    }
  }
  return out;
}

/** The shared pattern. */
export const pattern = makePattern();

const hashes = new Map<number, string>();
/** SHA-256 (hex) of `total` bytes of repeated pattern. */
export function expectedHash(total: number): string {
  let hex = hashes.get(total);
  if (hex === undefined) {
    const hash = createHash("sha256");
    for (let off = 0; off < total; off += BLOCK) {
      const at = off % PATTERN_SIZE;
      hash.update(pattern.subarray(at, at + Math.min(BLOCK, total - off)));
    }
    hex = hash.digest("hex");
    hashes.set(total, hex);
  }
  return hex;
}

/** One measured transfer. */
export interface Scenario {
  /** Upload (client → server), download, or `streams` concurrent uploads. */
  kind: "up" | "down" | "streams";
  /** Payload bytes in all (split evenly over the streams, in whole 64 KiB blocks). */
  bytes: number;
  /** Bytes per write. */
  write: number;
  /** Concurrent streams (`streams` only). */
  streams?: number;
}

/** Bytes each stream of `s` carries. */
export function perStream(s: Scenario): number {
  if (s.kind !== "streams") return s.bytes;
  return Math.floor(s.bytes / s.streams! / BLOCK) * BLOCK;
}

/** STOQ's execution profile in the benches (STOQ_BENCH_PROFILE; the default otherwise). */
const profile = (Deno.env.get("STOQ_BENCH_PROFILE") || undefined) as
  | "low-latency"
  | "max-throughput"
  | undefined;

/** STOQ's GSO setting in the benches (STOQ_BENCH_GSO=0 turns it off; on otherwise). */
const gso = Deno.env.get("STOQ_BENCH_GSO") === "0" ? false : undefined;

/** Which transport to measure. */
export type Transport = "stoq" | "deno";

type Stream = {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes `total` bytes of pattern in `write`-byte writes, then FIN. */
async function writePattern(
  writable: WritableStream<Uint8Array>,
  total: number,
  write: number,
  header?: Uint8Array,
): Promise<void> {
  const w = writable.getWriter();
  if (header) await w.write(header);
  for (let sent = 0; sent < total;) {
    const at = sent % PATTERN_SIZE;
    const n = Math.min(write, total - sent, PATTERN_SIZE - at);
    await w.write(pattern.subarray(at, at + n));
    sent += n;
  }
  await w.close();
}

/**
 * How the STOQ side reads: `in-place` (msquic's buffers lent, no copy; the default) or `web`
 * (the ReadableStream, one copy). Deno's QUIC has only the latter.
 */
export const stoqRead = Deno.env.get("STOQ_BENCH_READ") === "web"
  ? "web"
  : "in-place";

/** Hashes a stream to its end after `first` bytes already read; returns hash and count. */
async function hashRest(
  readable: ReadableStream<Uint8Array>,
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined,
  first: Uint8Array,
): Promise<{ hex: string; bytes: number }> {
  const hash = createHash("sha256");
  hash.update(first);
  let bytes = first.byteLength;
  if (stoqRead === "in-place" && "getInPlaceReader" in readable) {
    reader?.releaseLock();
    const lender = (readable as StoqReceiveStream).getInPlaceReader();
    for (let loan; (loan = await lender.read()) !== null;) {
      for (const chunk of loan.chunks) hash.update(chunk);
      bytes += loan.byteLength;
      loan.release();
    }
    return { hex: hash.digest("hex"), bytes };
  }
  const r = reader ?? readable.getReader();
  for (;;) {
    const { value, done } = await r.read();
    if (done) break;
    hash.update(value);
    bytes += value.byteLength;
  }
  return { hex: hash.digest("hex"), bytes };
}

/** Serves one stream of the protocol. */
async function serveStream(stream: Stream): Promise<void> {
  const reader = stream.readable.getReader();
  let line = "";
  let rest: Uint8Array | undefined;
  while (rest === undefined) {
    const { value, done } = await reader.read();
    if (done) return;
    const nl = value.indexOf(10);
    if (nl < 0) {
      line += decoder.decode(value);
      continue;
    }
    line += decoder.decode(value.subarray(0, nl));
    rest = value.subarray(nl + 1);
  }
  if (line === "up") {
    const { hex, bytes } = await hashRest(stream.readable, reader, rest);
    const w = stream.writable.getWriter();
    await w.write(encoder.encode(`${bytes} ${hex}`));
    await w.close();
    return;
  }
  const down = /^down (\d+) (\d+)$/.exec(line);
  if (!down) throw new Error(`unknown request ${line}`);
  reader.releaseLock();
  await writePattern(stream.writable, Number(down[1]), Number(down[2]));
}

async function serveConnection(
  conn: { incomingBidirectionalStreams: ReadableStream<Stream> },
): Promise<void> {
  for await (const stream of conn.incomingBidirectionalStreams) {
    serveStream(stream).catch(() => {/* the client went away */});
  }
}

/** Listens on ::1 over `transport` and serves the protocol. */
export function serveBench(
  transport: Transport,
  cert: string,
  key: string,
): { port: number; close(): Promise<void> } {
  if (transport === "stoq") {
    const endpoint = new StoqEndpoint({ hostname: "::1", profile, gso });
    const listener = endpoint.listen({
      alpnProtocols: ["bench"],
      cert,
      key,
      ...JSON.parse(Deno.env.get("STOQ_BENCH_OPTS") ?? "{}"),
    });
    (async () => {
      for await (const conn of listener) serveConnection(conn).catch(() => {});
    })();
    Deno.addSignalListener("SIGUSR2", () => {
      console.error(JSON.stringify(endpoint.nativeCounts()));
    });
    return { port: listener.addr.port, close: () => endpoint.close() };
  }
  const endpoint = new Deno.QuicEndpoint({ hostname: "::1", port: 0 });
  const listener = endpoint.listen({ alpnProtocols: ["bench"], cert, key });
  (async () => {
    for await (const incoming of listener) {
      Promise.resolve(incoming.accept()).then((conn) => serveConnection(conn))
        .catch(() => {});
    }
  })().catch(() => {/* stopped */});
  return {
    port: endpoint.addr.port,
    close() {
      listener.stop();
      endpoint.close();
      return Promise.resolve();
    },
  };
}

/** A server and what a client needs to reach it. */
export interface Server extends AsyncDisposable {
  port: number;
  ca: string;
  pid: number;
}

/** Reads a child's first stdout line. */
async function firstLine(
  child: Deno.ChildProcess,
  who: string,
): Promise<string> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${who} exited before listening`);
    line += value;
  }
  reader.releaseLock();
  return line.trim();
}

/** Starts a `transport` server in its own process (bench/_server.ts). */
export async function startServer(transport: Transport): Promise<Server> {
  const tls = await makeDevCertificates();
  const dir = await Deno.makeTempDir({ prefix: "stoq-bench-" });
  await Deno.writeTextFile(`${dir}/cert.pem`, tls.cert);
  await Deno.writeTextFile(`${dir}/key.pem`, tls.key);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      ...(Deno.env.get("STOQ_SERVER_FLAGS")?.split(" ").filter(Boolean) ?? []),
      new URL("./_server.ts", import.meta.url).pathname,
      transport,
      `${dir}/cert.pem`,
      `${dir}/key.pem`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const port = Number(await firstLine(child, `the ${transport} server`));
  child.stdout.cancel().catch(() => {});
  return {
    port,
    ca: tls.ca,
    pid: child.pid,
    async [Symbol.asyncDispose]() {
      child.kill();
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Runs one stream of `s` from the client side; checks the answer. */
async function clientStream(
  stream: Stream,
  s: Scenario,
  who: string,
): Promise<void> {
  const bytes = perStream(s);
  if (s.kind === "down") {
    const header = encoder.encode(`down ${bytes} ${s.write}\n`);
    const w = stream.writable.getWriter();
    await w.write(header);
    await w.close();
    const { hex, bytes: got } = await hashRest(
      stream.readable,
      undefined,
      new Uint8Array(0),
    );
    if (got !== bytes || hex !== expectedHash(bytes)) {
      throw new Error(
        `${who}: downloaded ${got} bytes with SHA-256 ${hex}, expected ${bytes} / ${
          expectedHash(bytes)
        }`,
      );
    }
    return;
  }
  await writePattern(stream.writable, bytes, s.write, encoder.encode("up\n"));
  let reply = "";
  for await (const chunk of stream.readable) reply += decoder.decode(chunk);
  const want = `${bytes} ${expectedHash(bytes)}`;
  if (reply !== want) {
    throw new Error(
      `${who}: the server answered '${reply}', expected '${want}'`,
    );
  }
}

/** A connection as both transports offer it. */
interface Conn {
  createBidirectionalStream(): Promise<Stream>;
}

/** Marks the timed part of a run (`Deno.BenchContext` fits). */
export interface Timer {
  start(): void;
  end(): void;
}

/** Seconds for `s` over an open connection (streams opened inside the timing). */
async function timed(
  conn: Conn,
  s: Scenario,
  who: string,
  timer?: Timer,
): Promise<number> {
  const count = s.kind === "streams" ? s.streams! : 1;
  expectedHash(perStream(s));
  timer?.start();
  const t0 = performance.now();
  await Promise.all(
    Array.from(
      { length: count },
      async () => clientStream(await conn.createBidirectionalStream(), s, who),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  timer?.end();
  return seconds;
}

/**
 * Seconds for `s` over a new STOQ connection to `server`; `options` adds connect options (e.g.
 * `congestionControl`).
 */
export async function stoqRun(
  server: Server,
  s: Scenario,
  timer?: Timer,
  options: Partial<StoqConnectOptions> = {},
): Promise<number> {
  await using client = new StoqEndpoint({ profile, gso });
  const conn = await client.connect({
    hostname: "::1",
    port: server.port,
    alpnProtocols: ["bench"],
    caCerts: [server.ca],
    ...JSON.parse(Deno.env.get("STOQ_BENCH_OPTS") ?? "{}"),
    ...options,
  });
  return await timed(conn, s, "STOQ", timer);
}

/** The same over `Deno.connectQuic`; `options` adds connect options. */
export async function denoRun(
  server: Server,
  s: Scenario,
  timer?: Timer,
  options: Partial<Deno.ConnectQuicOptions<boolean>> = {},
): Promise<number> {
  const conn = await Deno.connectQuic({
    hostname: "::1",
    port: server.port,
    alpnProtocols: ["bench"],
    caCerts: [server.ca],
    ...options,
  });
  try {
    return await timed(conn, s, "Deno QUIC", timer);
  } finally {
    conn.close();
  }
}

// ---- uploads in the shape bench/loss.ts uses ----

/** An upload payload: `size` bytes of the pattern and their SHA-256. */
export interface Payload {
  size: number;
  sha256: string;
}

/** A payload of `size` bytes of the pattern. */
export function makePayload(size: number): Payload {
  return { size, sha256: expectedHash(size) };
}

/** A server to upload to. */
export type Receiver = Server;

/** Starts a `transport` server in its own process. */
export function startReceiver(transport: Transport): Promise<Receiver> {
  return startServer(transport);
}

/** Seconds to upload `payload` (64 KiB writes) over STOQ; `options` adds connect options. */
export function stoqUpload(
  receiver: Receiver,
  payload: Payload,
  timer?: Timer,
  options: Partial<StoqConnectOptions> = {},
): Promise<number> {
  return stoqRun(
    receiver,
    { kind: "up", bytes: payload.size, write: BLOCK },
    timer,
    options,
  );
}

/** The same over `Deno.connectQuic`. */
export function denoUpload(
  receiver: Receiver,
  payload: Payload,
  timer?: Timer,
  options: Partial<Deno.ConnectQuicOptions<boolean>> = {},
): Promise<number> {
  return denoRun(
    receiver,
    { kind: "up", bytes: payload.size, write: BLOCK },
    timer,
    options,
  );
}

/** Gbit/s for `bytes` moved in `seconds`. */
export function gbps(bytes: number, seconds: number): number {
  return (bytes * 8) / seconds / 1e9;
}

/** Payload bytes a scenario moves in all. */
export function totalBytes(s: Scenario): number {
  return perStream(s) * (s.kind === "streams" ? s.streams! : 1);
}

/** The C baseline (bench/c_baseline.c), built with the dev certificates by the Makefile. */
export const cBaselineBin = new URL("../build/c_baseline", import.meta.url)
  .pathname;
const certDir = new URL("../build/dev-certs", import.meta.url).pathname;

/** Starts the C baseline's server, or returns undefined when it is not built. */
export async function startCServer(): Promise<Server | undefined> {
  try {
    await Deno.stat(cBaselineBin);
    await Deno.stat(`${certDir}/cert.pem`);
  } catch {
    return undefined;
  }
  for (let attempt = 0;; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const child = new Deno.Command(cBaselineBin, {
      args: [
        "server",
        `${certDir}/cert.pem`,
        `${certDir}/key.pem`,
        String(port),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    try {
      await firstLine(child, "the C baseline server");
    } catch (err) {
      await child.status;
      if (attempt < 3) continue; // the port was taken
      throw err;
    }
    child.stdout.cancel().catch(() => {});
    return {
      port,
      ca: "",
      pid: child.pid,
      async [Symbol.asyncDispose]() {
        child.kill();
        await child.status;
      },
    };
  }
}

/** Gbit/s of one C-baseline client run of `s` against `server`. */
export async function cRun(server: Server, s: Scenario): Promise<number> {
  const mib = String(s.bytes / (1024 * 1024));
  const args = s.kind === "streams"
    ? ["client", String(server.port), "streams", mib, String(s.streams)]
    : ["client", String(server.port), s.kind, mib, String(s.write)];
  const out = await new Deno.Command(cBaselineBin, { args, stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  const m = /([\d.]+) Gbit\/s/.exec(text);
  if (!out.success || !m) {
    throw new Error(
      `the C baseline failed (${args.join(" ")}): ${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return Number(m[1]);
}
