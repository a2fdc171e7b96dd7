import assert from "node:assert/strict";
import {
  type StoqConnection,
  type StoqConnectOptions,
  StoqEndpoint,
  type StoqListenOptions,
} from "../mod.ts";
import { type Impairment, LossyRelay } from "../testing/lossy_relay.ts";
import {
  ALPN,
  assertStoqError,
  devCerts,
  hashStream,
  randomBytes,
  rejection,
  sha256,
  writeAll,
} from "./_helpers.ts";

/** A server, a relay in front of it and a client connected through the relay. */
interface LossyPair extends AsyncDisposable {
  relay: LossyRelay;
  /** The client side. */
  conn: StoqConnection;
  /** The server side. */
  peer: StoqConnection;
}

async function lossyPair(
  impairment: Impairment,
  options: {
    listen?: Partial<StoqListenOptions>;
    connect?: Partial<StoqConnectOptions>;
  } = {},
): Promise<LossyPair> {
  const c = await devCerts();
  const server = new StoqEndpoint({ hostname: "::1", port: 0 });
  const client = new StoqEndpoint();
  let relay: LossyRelay | undefined;
  try {
    const listener = server.listen({
      alpnProtocols: [ALPN],
      cert: c.cert,
      key: c.key,
      ...options.listen,
    });
    relay = await LossyRelay.start({ targetPort: listener.addr.port });
    await relay.impair(impairment);
    const accepted = listener.accept();
    accepted.catch(() => {});
    const conn = await client.connect({
      hostname: "::1",
      port: relay.port,
      alpnProtocols: [ALPN],
      caCerts: [c.ca],
      ...options.connect,
    });
    const peer = await accepted;
    const r = relay;
    return {
      relay: r,
      conn,
      peer,
      async [Symbol.asyncDispose]() {
        await client.close();
        await server.close();
        await r.close();
      },
    };
  } catch (err) {
    await client.close();
    await server.close();
    await relay?.close();
    throw err;
  }
}

Deno.test("64 MiB through 5 % loss, reordering and duplication arrive hash-identical", async () => {
  // No added delay: the round trip stays short, so Cubic under 5 % loss still moves 64 MiB in
  // seconds. (BBR with a delayed path trips an msquic limit; see the README's limits.)
  await using p = await lossyPair({
    loss: 0.05,
    reorder: 0.05,
    reorderDelayMs: 1,
    duplicate: 0.02,
  });
  const data = randomBytes(64 * 1024 * 1024);
  const incoming = p.peer.incomingBidirectionalStreams.getReader();
  const { writable } = await p.conn.createBidirectionalStream();
  const [, received] = await Promise.all([
    writeAll(writable, data),
    incoming.read().then(({ value }) => hashStream(value!.readable)),
  ]);
  assert.equal(received.bytes, data.byteLength);
  assert.equal(received.hash, sha256(data));
  // The path really was lossy, reordering and duplicating, in both directions.
  const s = await p.relay.stats();
  for (const dir of [s.up, s.down]) {
    assert.ok(dir.lost > 0, `datagrams were dropped: ${JSON.stringify(s)}`);
    assert.ok(
      dir.reordered > 0,
      `datagrams were reordered: ${JSON.stringify(s)}`,
    );
    assert.ok(
      dir.duplicated > 0,
      `datagrams were duplicated: ${JSON.stringify(s)}`,
    );
  }
});

for (const when of ["idle", "mid-transfer"] as const) {
  Deno.test(`a black hole ${when} fails both ends with IDLE_TIMEOUT`, async () => {
    // Small idle timeouts keep the test short; the bound itself is the transport's setting.
    await using p = await lossyPair({}, {
      listen: { maxIdleTimeout: 1000 },
      connect: { maxIdleTimeout: 1000 },
    });
    let pending: Promise<unknown> | undefined;
    let reading: Promise<unknown> | undefined;
    if (when === "mid-transfer") {
      const incoming = p.peer.incomingBidirectionalStreams.getReader();
      const { writable } = await p.conn.createBidirectionalStream();
      const w = writable.getWriter();
      const chunk = randomBytes(256 * 1024);
      // Writes until the connection fails: the window fills once nothing is acknowledged.
      pending = (async () => {
        for (;;) await w.write(chunk);
      })();
      pending.catch(() => {});
      const reader = (await incoming.read()).value!.readable.getReader();
      assert.ok(((await reader.read()).value?.byteLength ?? 0) > 0);
      reading = (async () => {
        while (!(await reader.read()).done);
      })();
      reading.catch(() => {});
    }
    await p.relay.blackhole("both");
    assertStoqError(await rejection(p.conn.closed), "IDLE_TIMEOUT");
    assertStoqError(await rejection(p.peer.closed), "IDLE_TIMEOUT");
    if (pending) assertStoqError(await rejection(pending), "IDLE_TIMEOUT");
    if (reading) assertStoqError(await rejection(reading), "IDLE_TIMEOUT");
    const s = await p.relay.stats();
    if (when === "mid-transfer") {
      assert.ok(s.up.blackholed > 0, "the client's packets went into the hole");
    }
  });
}

Deno.test("the relay refuses bad impairments before sending them", async () => {
  await using relay = await LossyRelay.start({ targetPort: 9 });
  assert.throws(() => relay.impair({ loss: 1.5 }), RangeError);
  assert.throws(() => relay.impair({ delayMs: -1 }), RangeError);
  assert.throws(
    () => relay.impair({ jitter: 3 } as unknown as Impairment),
    TypeError,
  );
  assert.throws(
    () => relay.blackhole("sideways" as unknown as "up"),
    RangeError,
  );
  // Still in service after the refusals.
  await relay.impair({ loss: 1, delayMs: 5 }, "up");
  const s = await relay.stats();
  assert.equal(s.flows, 0);
  await assert.rejects(LossyRelay.start({ targetPort: 0 }), RangeError);
});
