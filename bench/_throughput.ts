/**
 * One connection, one stream: the sender (this process) uploads a payload to a receiver in its
 * own process, which hashes every byte with SHA-256 and answers with the count and the hash;
 * the sender checks both. The same harness runs over STOQ and over Deno's built-in QUIC.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  makeDevCertificates,
  type StoqConnectOptions,
  StoqEndpoint,
} from "../mod.ts";

/** Bytes per write: the common 64 KiB. */
export const CHUNK = 64 * 1024;

/** A payload of random 64 KiB blocks (a few distinct ones, reused) and its SHA-256. */
export interface Payload {
  blocks: Uint8Array[];
  size: number;
  sha256: string;
}

/** Makes a payload of `size` bytes (a multiple of 64 KiB). */
export function makePayload(size: number): Payload {
  const distinct = Array.from(
    { length: 16 },
    () => crypto.getRandomValues(new Uint8Array(CHUNK)),
  );
  const blocks: Uint8Array[] = [];
  const hash = createHash("sha256");
  for (let i = 0; i < size / CHUNK; i++) {
    const b = distinct[i % distinct.length];
    blocks.push(b);
    hash.update(b);
  }
  return { blocks, size, sha256: hash.digest("hex") };
}

/** Marks the timed part of a run (`Deno.BenchContext` fits). */
export interface Timer {
  start(): void;
  end(): void;
}

/** Which transport to measure. */
export type Transport = "stoq" | "deno";

/** Where the receiver runs: its own process (as on two hosts) or beside the sender. */
export type Layout = "process" | "in-process";

/** A receiver and what a sender needs to reach it. */
export interface Receiver extends AsyncDisposable {
  port: number;
  ca: string;
}

type Stream = {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
};

/** Reads a stream to its end, hashing every byte, and answers "<bytes> <sha256hex>". */
async function answer(stream: Stream): Promise<void> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream.readable) {
    bytes += chunk.byteLength;
    hash.update(chunk);
  }
  const w = stream.writable.getWriter();
  await w.write(new TextEncoder().encode(`${bytes} ${hash.digest("hex")}`));
  await w.close();
}

async function serve(
  conn: { incomingBidirectionalStreams: ReadableStream<Stream> },
): Promise<void> {
  for await (const stream of conn.incomingBidirectionalStreams) {
    answer(stream).catch(() => {/* the sender went away */});
  }
}

/** Listens on ::1 over `transport` and answers every stream with its byte count and hash. */
export function serveReceiver(
  transport: Transport,
  cert: string,
  key: string,
): { port: number; close(): Promise<void> } {
  if (transport === "stoq") {
    const endpoint = new StoqEndpoint({ hostname: "::1" });
    const listener = endpoint.listen({ alpnProtocols: ["bench"], cert, key });
    (async () => {
      for await (const conn of listener) serve(conn).catch(() => {});
    })();
    return { port: listener.addr.port, close: () => endpoint.close() };
  }
  const endpoint = new Deno.QuicEndpoint({ hostname: "::1", port: 0 });
  const listener = endpoint.listen({ alpnProtocols: ["bench"], cert, key });
  (async () => {
    for await (const incoming of listener) {
      Promise.resolve(incoming.accept()).then((conn) => serve(conn)).catch(
        () => {},
      );
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

/** Starts a receiver for `transport`, in its own process unless `layout` says otherwise. */
export async function startReceiver(
  transport: Transport,
  layout: Layout = "process",
): Promise<Receiver> {
  const tls = await makeDevCertificates();
  if (layout === "in-process") {
    const r = serveReceiver(transport, tls.cert, tls.key);
    return { port: r.port, ca: tls.ca, [Symbol.asyncDispose]: () => r.close() };
  }
  const dir = await Deno.makeTempDir({ prefix: "stoq-bench-" });
  await Deno.writeTextFile(`${dir}/cert.pem`, tls.cert);
  await Deno.writeTextFile(`${dir}/key.pem`, tls.key);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      ...(Deno.env.get("STOQ_RECEIVER_FLAGS")?.split(" ").filter(Boolean) ??
        []),
      new URL("./_receiver.ts", import.meta.url).pathname,
      transport,
      `${dir}/cert.pem`,
      `${dir}/key.pem`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      throw new Error(`the ${transport} receiver exited before listening`);
    }
    line += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return {
    port: Number(line.trim()),
    ca: tls.ca,
    async [Symbol.asyncDispose]() {
      child.kill();
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function transfer(
  stream: {
    readable: ReadableStream<Uint8Array>;
    writable: WritableStream<Uint8Array>;
  },
  payload: Payload,
  who: string,
  timer?: Timer,
): Promise<number> {
  timer?.start();
  const t0 = performance.now();
  const w = stream.writable.getWriter();
  for (const block of payload.blocks) await w.write(block);
  await w.close();
  let reply = "";
  for await (const chunk of stream.readable) {
    reply += new TextDecoder().decode(chunk);
  }
  const seconds = (performance.now() - t0) / 1000;
  timer?.end();
  const [bytes, sha256] = reply.split(" ");
  if (Number(bytes) !== payload.size || sha256 !== payload.sha256) {
    throw new Error(
      `${who}: the receiver got ${bytes} bytes with SHA-256 ${sha256}, expected ${payload.size} / ${payload.sha256}`,
    );
  }
  return seconds;
}

/**
 * Seconds from the first write until the receiver confirmed every byte, over STOQ; `options`
 * adds connect options (e.g. `congestionControl`).
 */
export async function stoqUpload(
  receiver: Receiver,
  payload: Payload,
  timer?: Timer,
  options: Partial<StoqConnectOptions> = {},
): Promise<number> {
  await using client = new StoqEndpoint();
  const conn = await client.connect({
    hostname: "::1",
    port: receiver.port,
    alpnProtocols: ["bench"],
    caCerts: [receiver.ca],
    ...options,
  });
  return await transfer(
    await conn.createBidirectionalStream(),
    payload,
    "STOQ",
    timer,
  );
}

/** The same over `Deno.connectQuic`; `options` adds connect options. */
export async function denoUpload(
  receiver: Receiver,
  payload: Payload,
  timer?: Timer,
  options: Partial<Deno.ConnectQuicOptions<string>> = {},
): Promise<number> {
  const conn = await Deno.connectQuic({
    hostname: "::1",
    port: receiver.port,
    alpnProtocols: ["bench"],
    caCerts: [receiver.ca],
    ...options,
  });
  try {
    return await transfer(
      await conn.createBidirectionalStream(),
      payload,
      "Deno QUIC",
      timer,
    );
  } finally {
    conn.close();
  }
}

/** Gbit/s for `bytes` moved in `seconds`. */
export function gbps(bytes: number, seconds: number): number {
  return (bytes * 8) / seconds / 1e9;
}
