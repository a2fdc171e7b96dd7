/**
 * One-connection, one-stream upload over STOQ and over Deno's built-in QUIC, in this process,
 * with the receiver hashing every byte (SHA-256) and checking it against the sender's hash.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { makeDevCertificates, StoqEndpoint } from "../mod.ts";

/** Bytes per write: the common 64 KiB. */
export const CHUNK = 64 * 1024;

/** A payload of `size` bytes made of random 64 KiB blocks, and its SHA-256. */
export interface Payload {
  blocks: Uint8Array[];
  size: number;
  sha256: string;
}

/** Makes a random payload (a handful of distinct blocks reused, so memory stays small). */
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

async function drain(
  readable: ReadableStream<Uint8Array>,
): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of readable) {
    bytes += chunk.byteLength;
    hash.update(chunk);
  }
  return { bytes, sha256: hash.digest("hex") };
}

function check(
  payload: Payload,
  got: { bytes: number; sha256: string },
  who: string,
): void {
  if (got.bytes !== payload.size || got.sha256 !== payload.sha256) {
    throw new Error(
      `${who}: received ${got.bytes} bytes with sha256 ${got.sha256}, expected ${payload.size} / ${payload.sha256}`,
    );
  }
}

async function send(
  writable: WritableStream<Uint8Array>,
  payload: Payload,
): Promise<void> {
  const w = writable.getWriter();
  for (const block of payload.blocks) await w.write(block);
  await w.close();
}

const tls = await makeDevCertificates();

/** Marks the timed part of a run (`Deno.BenchContext` fits). */
export interface Timer {
  start(): void;
  end(): void;
}

/** Seconds taken (first write to verified last byte) to upload `payload` over STOQ. */
export async function stoqUpload(
  payload: Payload,
  timer?: Timer,
): Promise<number> {
  await using server = new StoqEndpoint({ hostname: "::1" });
  const listener = server.listen({
    alpnProtocols: ["bench"],
    cert: tls.cert,
    key: tls.key,
  });
  await using client = new StoqEndpoint();
  const received = (async () => {
    const conn = await listener.accept();
    const reader = conn.incomingBidirectionalStreams.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    return drain(value!.readable);
  })();
  const conn = await client.connect({
    hostname: "::1",
    port: listener.addr.port,
    alpnProtocols: ["bench"],
    caCerts: [tls.ca],
  });
  const { writable } = await conn.createBidirectionalStream();
  timer?.start();
  const t0 = performance.now();
  await send(writable, payload);
  const got = await received;
  const seconds = (performance.now() - t0) / 1000;
  timer?.end();
  check(payload, got, "STOQ");
  return seconds;
}

/** Seconds taken to upload `payload` over `Deno.connectQuic` / `Deno.QuicEndpoint`. */
export async function denoUpload(
  payload: Payload,
  timer?: Timer,
): Promise<number> {
  const endpoint = new Deno.QuicEndpoint({ hostname: "::1", port: 0 });
  try {
    const listener = endpoint.listen({
      alpnProtocols: ["bench"],
      cert: tls.cert,
      key: tls.key,
    });
    const received = (async () => {
      const conn = await listener.accept();
      const reader = conn.incomingBidirectionalStreams.getReader();
      const { value } = await reader.read();
      reader.releaseLock();
      return drain(value!.readable);
    })();
    const conn = await Deno.connectQuic({
      hostname: "::1",
      port: endpoint.addr.port,
      alpnProtocols: ["bench"],
      caCerts: [tls.ca],
    });
    const { writable } = await conn.createBidirectionalStream();
    timer?.start();
    const t0 = performance.now();
    await send(writable, payload);
    const got = await received;
    const seconds = (performance.now() - t0) / 1000;
    timer?.end();
    check(payload, got, "Deno QUIC");
    conn.close();
    return seconds;
  } finally {
    endpoint.close();
  }
}

/** Gbit/s for `bytes` moved in `seconds`. */
export function gbps(bytes: number, seconds: number): number {
  return (bytes * 8) / seconds / 1e9;
}
