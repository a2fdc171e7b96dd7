import assert from "node:assert/strict";
import { type StoqConnection, StoqEndpoint } from "../mod.ts";
import { streamPayload } from "./fixtures/limits_server.ts";
import { assertStoqError, pair, rejection } from "./_helpers.ts";

const MB = 1024 * 1024;
// Under AddressSanitizer (`make test-asan`) freed memory sits in ASan's quarantine (256 MB by
// default), so resident size says nothing about what the shim holds: the memory bounds are
// checked in the plain runs only; the sanitizer runs still exercise every path.
const SANITIZED = Deno.env.get("LD_PRELOAD")?.includes("libasan") === true;

function assertGrowth(grown: number): void {
  if (SANITIZED) return;
  assert.ok(
    grown < 64 * MB,
    `server RSS grew by ${(grown / MB).toFixed(1)} MB`,
  );
}

/** The limits server (tests/fixtures/limits_server.ts) in its own process. */
async function limitsServer(options: Record<string, unknown> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      new URL("./fixtures/limits_server.ts", import.meta.url).pathname,
      JSON.stringify(options),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stdin = child.stdin.getWriter();
  let buffered = "";
  const next = async (): Promise<Record<string, unknown>> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("the limits server exited");
      buffered += value;
    }
    const nl = buffered.indexOf("\n");
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    return JSON.parse(line);
  };
  const hello = await next();
  return {
    port: hello.port as number,
    ca: hello.ca as string,
    /** Sends one command and returns its JSON answer. */
    async ask(command: string): Promise<Record<string, number>> {
      await stdin.write(new TextEncoder().encode(`${command}\n`));
      return await next() as Record<string, number>;
    },
    async [Symbol.asyncDispose]() {
      await stdin.close().catch(() => {});
      child.kill();
      await child.status;
      await lines.cancel().catch(() => {});
    },
  };
}

async function connectTo(
  client: StoqEndpoint,
  server: { port: number; ca: string },
): Promise<StoqConnection> {
  return await client.connect({
    hostname: "::1",
    port: server.port,
    alpnProtocols: ["stoq-limits"],
    caCerts: [server.ca],
  });
}

Deno.test("2,000,000 unread datagrams leave the server's memory within 64 MB: the oldest are dropped and counted", async () => {
  await using server = await limitsServer();
  await using client = new StoqEndpoint();
  const conn = await connectTo(client, server);
  const start = (await server.ask("rss")).rss;
  const one = new Uint8Array([7]);
  const BATCH = 4096;
  const TOTAL = 2_000_000;
  for (let sent = 0; sent < TOTAL; sent += BATCH) {
    await Promise.all(
      Array.from(
        { length: Math.min(BATCH, TOTAL - sent) },
        () => conn.sendDatagram(one),
      ),
    );
  }
  // Every datagram has left the client once msquic gave back every send buffer (polled: the
  // shim frees them as msquic reports each datagram sent or lost)...
  while (client.nativeCounts().datagramBuffers > 0) {
    await new Promise((r) => setTimeout(r, 20));
  }
  // ...and the server has processed them once it has read a stream sent after them.
  const barrier = await conn.createBidirectionalStream();
  const barrierDone = server.ask("barrier");
  const w = barrier.writable.getWriter();
  await w.write(new Uint8Array([1]));
  await w.close();
  for await (const _ of barrier.readable);
  await barrierDone;
  const { dropped, queued } = await server.ask("stats");
  const grown = (await server.ask("rss")).rss - start;
  assert.ok(dropped > 0, "the queue was full and dropped datagrams");
  assert.ok(queued <= 256, `queued ${queued} > the default bound of 256`);
  assert.ok(
    dropped + queued <= TOTAL,
    `dropped ${dropped} + queued ${queued}`,
  );
  assertGrowth(grown);
  conn.close();
});

async function unacceptedStreams(kind: "uni" | "bidi"): Promise<void> {
  await using server = await limitsServer();
  await using client = new StoqEndpoint();
  const conn = await connectTo(client, server);
  const start = (await server.ask("rss")).rss;
  // 2,000 streams of 256 KiB + FIN, all at once; the server accepts none of them yet.
  const sends = Array.from({ length: 2000 }, async (_, i) => {
    const writable = kind === "uni"
      ? await conn.createUnidirectionalStream()
      : (await conn.createBidirectionalStream()).writable;
    const w = writable.getWriter();
    await w.write(streamPayload(i));
    await w.close();
  });
  sends.forEach((s) => s.catch(() => {}));
  // The peer can fill the connection's receive window (16 MiB) and no more: wait until it has
  // (polled: the client's own byte count), then look at the server.
  const windowBytes = 16 * MB;
  while (conn.stats().streamBytesSent < windowBytes) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assertGrowth((await server.ask("rss")).rss - start);
  // No stream beyond the server's limit (100) was admitted while none was accepted.
  const opened = conn.stats().streamBytesSent;
  assert.ok(opened <= 100 * 256 * 1024 + 64 * 1024);
  // Accepting them lets every one through, intact, in credit-sized steps.
  const answer = await server.ask(`accept ${kind} 2000`);
  assert.deepEqual(answer, { accepted: 2000, bad: 0 });
  await Promise.all(sends);
  conn.close();
}

Deno.test("2,000 unaccepted 256 KiB unidirectional streams leave the server's memory within 64 MB", async () => {
  await unacceptedStreams("uni");
});

Deno.test("2,000 unaccepted 256 KiB bidirectional streams leave the server's memory within 64 MB", async () => {
  await unacceptedStreams("bidi");
});

Deno.test("a peer stream that is never accepted keeps its credit: the peer cannot open more than the limit", async () => {
  await using p = await pair({
    listen: { maxConcurrentUnidirectionalStreams: 3 },
  });
  // The peer resets each stream at once; the server never accepts them.
  for (let i = 0; i < 3; i++) {
    const writable = await p.conn.createUnidirectionalStream();
    await writable.abort(9);
  }
  const err = await rejection(
    p.conn.createUnidirectionalStream({ waitUntilAvailable: false }),
  );
  assertStoqError(err, "STREAM_LIMIT");
  // Accepting the three (each already reset) returns their credit.
  const incoming = p.peer.incomingUnidirectionalStreams.getReader();
  for (let i = 0; i < 3; i++) {
    const { value } = await incoming.read();
    const reset = await rejection(value!.getReader().read());
    assert.equal(assertStoqError(reset, "PEER_RESET").appCode, 9n);
  }
  const again = await p.conn.createUnidirectionalStream();
  await again.close();
});

Deno.test("datagrams beyond datagramReceiveQueue drop the oldest; the newest are read, and the drops counted", async () => {
  await using p = await pair({
    listen: { datagramReceiveQueue: 4 },
  });
  for (let i = 0; i < 10; i++) await p.conn.sendDatagram(new Uint8Array([i]));
  // A stream after them is processed after them.
  const { readable, writable } = await p.conn.createBidirectionalStream();
  const w = writable.getWriter();
  await w.write(new Uint8Array([1]));
  await w.close();
  const { value: stream } = await p.peer.incomingBidirectionalStreams
    .getReader()
    .read();
  for await (const _ of stream!.readable);
  await stream!.writable.close();
  for await (const _ of readable);
  const got: number[] = [];
  for (let i = 0; i < 4; i++) got.push((await p.peer.readDatagram())[0]);
  // Loopback loses nothing here, so exactly the last four remain.
  assert.deepEqual(got, [6, 7, 8, 9]);
  assert.equal(p.peer.stats().datagramsDropped, 6);
});

Deno.test("datagramReceiveQueue must be an integer from 1 to 65536", async () => {
  await using client = new StoqEndpoint();
  for (const bad of [0, 1.5, 65537, "8"]) {
    const err = await rejection(
      client.connect({
        hostname: "::1",
        port: 1,
        alpnProtocols: ["x"],
        datagramReceiveQueue: bad as number,
      }),
    );
    assertStoqError(err, "INVALID_ARGUMENT");
  }
});

Deno.test("iterating a listener keeps no reference to a connection that has closed", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      "--v8-flags=--expose-gc",
      new URL("./fixtures/listener_gc.ts", import.meta.url).pathname,
    ],
    stderr: "inherit",
  }).output();
  assert.ok(out.success);
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "collected");
});
