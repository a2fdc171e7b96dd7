/**
 * Shared helpers for the transport tests: dev certificates made once, a loopback `pair()`,
 * payload generation and SHA-256 helpers.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  type DevCertificates,
  makeDevCertificates,
  type StoqConnection,
  type StoqConnectOptions,
  StoqEndpoint,
  StoqError,
  type StoqErrorCode,
  type StoqListener,
  type StoqListenOptions,
} from "../mod.ts";

/** The ALPN the tests speak. */
export const ALPN = "stoq-test";

let certs: Promise<DevCertificates> | undefined;

/** One set of dev certificates per test process. */
export function devCerts(): Promise<DevCertificates> {
  certs ??= makeDevCertificates();
  return certs;
}

/** A server endpoint with a listener, a client endpoint and one connection accepted by both. */
export interface Pair extends AsyncDisposable {
  server: StoqEndpoint;
  client: StoqEndpoint;
  listener: StoqListener;
  /** The client side of the connection. */
  conn: StoqConnection;
  /** The server side of the connection. */
  peer: StoqConnection;
  certs: DevCertificates;
}

/** Options for {@linkcode pair}. */
export interface PairOptions {
  listen?: Partial<StoqListenOptions>;
  connect?: Partial<StoqConnectOptions>;
}

/** Opens a loopback pair on ::1. Close it with `await using`. */
export async function pair(options: PairOptions = {}): Promise<Pair> {
  const c = await devCerts();
  const server = new StoqEndpoint({ hostname: "::1", port: 0 });
  let client: StoqEndpoint | undefined;
  try {
    const listener = server.listen({
      alpnProtocols: [ALPN],
      cert: c.cert,
      key: c.key,
      ...options.listen,
    });
    client = new StoqEndpoint();
    const accepted = listener.accept();
    // When the handshake fails, the listener is stopped and this rejects unobserved.
    accepted.catch(() => {});
    const conn = await client.connect({
      hostname: "::1",
      port: listener.addr.port,
      alpnProtocols: [ALPN],
      caCerts: [c.ca],
      ...options.connect,
    });
    const peer = await accepted;
    const cl = client;
    return {
      server,
      client: cl,
      listener,
      conn,
      peer,
      certs: c,
      async [Symbol.asyncDispose]() {
        await cl.close();
        await server.close();
      },
    };
  } catch (err) {
    await client?.close();
    await server.close();
    throw err;
  }
}

/** `n` random bytes (getRandomValues fills at most 64 KiB per call). */
export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  }
  return out;
}

/** Hex SHA-256 of `bytes`. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Reads a stream to its end, hashing as it goes; returns the hash and the byte count. */
export async function hashStream(
  readable: ReadableStream<Uint8Array>,
  onChunk?: (total: number) => void,
): Promise<{ hash: string; bytes: number }> {
  const h = createHash("sha256");
  let bytes = 0;
  for await (const chunk of readable) {
    h.update(chunk);
    bytes += chunk.byteLength;
    onChunk?.(bytes);
  }
  return { hash: h.digest("hex"), bytes };
}

/** Reads a stream to its end into one buffer. */
export async function readAll(
  readable: ReadableStream<Uint8Array>,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of readable) {
    chunks.push(chunk);
    total += chunk.byteLength;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/** Writes `data` in `chunkSize` pieces and closes the writable (FIN). */
export async function writeAll(
  writable: WritableStream<Uint8Array>,
  data: Uint8Array,
  chunkSize = 256 * 1024,
): Promise<void> {
  const w = writable.getWriter();
  for (let off = 0; off < data.byteLength; off += chunkSize) {
    await w.write(
      data.subarray(off, Math.min(data.byteLength, off + chunkSize)),
    );
  }
  await w.close();
}

/** Asserts `err` is a StoqError with one of `codes`; returns it. */
export function assertStoqError(
  err: unknown,
  ...codes: StoqErrorCode[]
): StoqError {
  if (!(err instanceof StoqError)) {
    throw new Error(
      `expected a StoqError (${codes.join("|")}), got ${String(err)}`,
      {
        cause: err,
      },
    );
  }
  if (!codes.includes(err.code)) {
    throw new Error(
      `expected StoqError ${codes.join("|")}, got ${err.code}: ${err.message}`,
      {
        cause: err,
      },
    );
  }
  return err;
}

/** Awaits `p` and returns what it rejected with; fails if it resolves. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected the promise to reject, but it resolved");
}

/** The native counts that must come back to zero once every endpoint is closed. */
export const LIVE_COUNTS = [
  "configs",
  "listeners",
  "connections",
  "streams",
  "sendBuffers",
  "datagramBuffers",
  "receiveBuffers",
  "datagramsQueued",
  "fileTransfers",
] as const;

/** Native counts of this process's runtime (opens it if needed, then releases it). */
export async function nativeCounts(): Promise<Record<string, number>> {
  const ep = new StoqEndpoint();
  try {
    return ep.nativeCounts();
  } finally {
    await ep.close();
  }
}

/**
 * Echoes every bidirectional stream the peer opens on `conn`, hashing what it received per
 * stream. Resolves with the hashes (in arrival order) once the connection's incoming streams end.
 */
export async function serveEcho(
  conn: StoqConnection,
): Promise<{ hash: string; bytes: number }[]> {
  const jobs: Promise<{ hash: string; bytes: number }>[] = [];
  for await (
    const { readable, writable } of conn.incomingBidirectionalStreams
  ) {
    jobs.push((async () => {
      const h = createHash("sha256");
      let bytes = 0;
      await readable.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, c) {
            h.update(chunk);
            bytes += chunk.byteLength;
            c.enqueue(chunk);
          },
        }),
      ).pipeTo(writable);
      return { hash: h.digest("hex"), bytes };
    })());
    // Observed at once: a stream the peer resets must not count as an unhandled rejection
    // before Promise.all below gets to it.
    jobs.at(-1)!.catch(() => {});
  }
  return await Promise.all(jobs);
}

/** Sends `data` on a new bidirectional stream of `conn` and returns the hash of the echo. */
export async function echoOnce(
  conn: StoqConnection,
  data: Uint8Array,
  chunkSize?: number,
): Promise<{ hash: string; bytes: number }> {
  const { readable, writable } = await conn.createBidirectionalStream();
  const [, back] = await Promise.all([
    writeAll(writable, data, chunkSize),
    hashStream(readable),
  ]);
  return back;
}

/** An echo server in a child process (tests/fixtures/echo_server.ts). */
export interface EchoProcess extends AsyncDisposable {
  port: number;
  ca: string;
  child: Deno.ChildProcess;
  /** Options that connect to this server (on ::1, trusting its CA), with `extra` added. */
  connectOptions(extra?: Partial<StoqConnectOptions>): StoqConnectOptions;
  /** Whether the `n`-th stream (from 0) the server accepted was opened by 0-RTT data. */
  earlyData(n: number): Promise<boolean>;
}

/**
 * Stops (SIGSTOP) or resumes (SIGCONT) a child process and waits until the kernel reports the
 * new state: a stop is delivered to the process's threads asynchronously.
 */
export async function freeze(
  child: Deno.ChildProcess,
  frozen: boolean,
): Promise<void> {
  child.kill(frozen ? "SIGSTOP" : "SIGCONT");
  const stat = `/proc/${child.pid}/stat`;
  // The state is the field after the parenthesised command name.
  const state = async () =>
    (await Deno.readTextFile(stat)).split(") ")[1].split(" ")[0];
  while ((await state() === "T") !== frozen) { /* the signal is on its way */ }
}

/** Starts the echo server fixture in its own process with extra listen options. */
export async function spawnEchoServer(
  listenOptions: Partial<StoqListenOptions> = {},
  alpn = ALPN,
): Promise<EchoProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      new URL("./fixtures/echo_server.ts", import.meta.url).pathname,
      alpn,
      JSON.stringify(listenOptions),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await out.read();
    if (done) throw new Error("the echo server exited before listening");
    line += value;
  }
  const [first, ...rest] = line.split("\n");
  const { port, ca } = JSON.parse(first);
  const reports: PromiseWithResolvers<boolean>[] = [];
  const report = (n: number) => reports[n] ??= Promise.withResolvers();
  let received = 0;
  let pending = rest.join("\n");
  const draining = (async () => {
    while (true) {
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const l of lines) {
        report(received++).resolve(JSON.parse(l).earlyData);
      }
      const { value, done } = await out.read();
      if (done) break;
      pending += value;
    }
  })();
  return {
    port,
    ca,
    connectOptions: (extra = {}) => ({
      hostname: "::1",
      port,
      alpnProtocols: [alpn],
      caCerts: [ca],
      ...extra,
    }),
    child,
    earlyData: (n) => report(n).promise,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGCONT");
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.status;
      await draining;
    },
  };
}
