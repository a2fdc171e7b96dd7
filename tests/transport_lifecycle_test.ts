import assert from "node:assert/strict";
import { StoqEndpoint } from "../mod.ts";
import {
  ALPN,
  assertStoqError,
  LIVE_COUNTS,
  nativeCounts,
  pair,
  randomBytes,
  rejection,
  spawnEchoServer,
} from "./_helpers.ts";

/** Starts a 32 MiB write the server does not read, and resolves once data reached the server. */
async function stalledSend(p: Awaited<ReturnType<typeof pair>>) {
  const incoming = p.peer.incomingBidirectionalStreams.getReader();
  const { writable } = await p.conn.createBidirectionalStream();
  const w = writable.getWriter();
  const chunk = randomBytes(1024 * 1024);
  const writing = (async () => {
    for (let i = 0; i < 32; i++) await w.write(chunk);
    await w.close();
  })();
  writing.catch(() => {});
  const { value } = await incoming.read();
  incoming.releaseLock();
  // Read one chunk so we know bytes are flowing, then stop reading: flow control stalls the rest.
  const reader = value!.readable.getReader();
  const first = await reader.read();
  assert.ok(first.value && first.value.byteLength > 0);
  // The writer copies its chunks in over a few turns: wait (polling the shim's count, a few
  // milliseconds at most) until msquic holds sends it cannot complete.
  for (let i = 0; i < 500 && p.client.nativeCounts().sendBuffers === 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  return { writing, reader };
}

for (const who of ["locally", "by the peer"] as const) {
  Deno.test(`a send whose connection is closed ${who} mid-transfer frees its buffers exactly once`, async () => {
    const before = await nativeCounts();
    {
      await using p = await pair();
      const { writing, reader } = await stalledSend(p);
      assert.ok(
        p.client.nativeCounts().sendBuffers > 0,
        "send buffers are held by msquic",
      );
      if (who === "locally") p.conn.close({ closeCode: 3 });
      else p.peer.close({ closeCode: 4 });
      const err = await rejection(writing);
      const e = assertStoqError(err, "CONNECTION_CLOSED");
      assert.equal(e.appCode, who === "locally" ? 3n : 4n);
      // Chunks already queued stay readable; the stream must then error, not end.
      await rejection((async () => {
        while (!(await reader.read()).done);
      })());
    }
    const after = await nativeCounts();
    assert.ok(after.sendsAllocated > before.sendsAllocated, "sends were made");
    assert.equal(
      after.sendsAllocated,
      after.sendsFreed,
      "every send buffer freed once",
    );
    assert.equal(after.sendBuffers, 0);
    for (const k of LIVE_COUNTS) assert.equal(after[k], 0, k);
  });
}

Deno.test("endpoint.close() with open connections and streams rejects pending reads and frees everything", async () => {
  const p = await pair();
  const other = new StoqEndpoint();
  const extra = await other.connect({
    hostname: "::1",
    port: p.listener.addr.port,
    alpnProtocols: [ALPN],
    caCerts: [p.certs.ca],
  });
  // Streams open both ways with reads pending on each side.
  const streams = await Promise.all(
    [p.conn, p.conn, extra].map((c) => c.createBidirectionalStream()),
  );
  const pendingReads = streams.map(({ readable, writable }) => {
    const w = writable.getWriter();
    w.write(new Uint8Array(10)).catch(() => {});
    w.releaseLock();
    // Observe each read now: it rejects while close() runs, before the asserts below.
    return rejection(readable.getReader().read());
  });
  const serverReads: Promise<unknown>[] = [];
  const incoming = p.peer.incomingBidirectionalStreams.getReader();
  for (let i = 0; i < 2; i++) {
    const { value } = await incoming.read();
    serverReads.push(
      value!.readable.getReader().read().then(() => value!.readable),
    );
  }
  incoming.releaseLock();
  assert.ok(p.client.nativeCounts().streams >= 5);

  await p.client.close();
  for (const r of pendingReads.slice(0, 2)) {
    // endpoint.close() closes its connections with code 0.
    assert.equal(assertStoqError(await r, "CONNECTION_CLOSED").appCode, 0n);
  }
  await p.server.close();
  // The third stream's connection belonged to another client endpoint, closed by the server.
  assertStoqError(await pendingReads[2], "CONNECTION_CLOSED");
  await other.close();
  const c = p.client.nativeCounts();
  for (const k of LIVE_COUNTS) assert.equal(c[k], 0, k);
  assert.equal(c.sendsAllocated, c.sendsFreed);
});

Deno.test("a peer process killed mid-transfer makes pending reads and writes reject within the idle timeout", async () => {
  await using server = await spawnEchoServer();
  const { port, ca, child } = server;
  {
    await using client = new StoqEndpoint();
    const conn = await client.connect({
      hostname: "::1",
      port,
      alpnProtocols: [ALPN],
      caCerts: [ca],
      maxIdleTimeout: 2000,
    });
    const { readable, writable } = await conn.createBidirectionalStream();
    const w = writable.getWriter();
    const chunk = randomBytes(256 * 1024);
    const writing = (async () => {
      while (true) await w.write(chunk);
    })();
    writing.catch(() => {});
    const reader = readable.getReader();
    let received = 0;
    while (received < 1024 * 1024) {
      const { value } = await reader.read();
      received += value!.byteLength;
    }
    // Data is flowing both ways: kill the server without letting it say goodbye.
    child.kill("SIGKILL");
    const killedAt = performance.now();
    const reading = (async () => {
      // Ends only by rejecting: a clean end would make `rejection` fail the test.
      while (!(await reader.read()).done);
    })();
    const [readErr, writeErr] = await Promise.all([
      rejection(reading),
      rejection(writing),
    ]);
    const elapsed = performance.now() - killedAt;
    assertStoqError(
      readErr,
      "IDLE_TIMEOUT",
      "CONNECTION_REFUSED",
      "CONNECTION_CLOSED",
    );
    assertStoqError(
      writeErr,
      "IDLE_TIMEOUT",
      "CONNECTION_REFUSED",
      "CONNECTION_CLOSED",
    );
    assert.ok(elapsed < 2000 + 1500, `rejected after ${elapsed.toFixed(0)} ms`);
    assertStoqError(
      await rejection(conn.closed),
      "IDLE_TIMEOUT",
      "CONNECTION_REFUSED",
    );
  }
});
