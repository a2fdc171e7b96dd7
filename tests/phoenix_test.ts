/**
 * Phoenix apps on ::1 with automatic certificates from a per-user CA (a temporary data
 * directory per test): messages, streams, the pool, multiplexing, refusals and monitoring.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Phoenix, type PhoenixMessage, StoqError } from "../mod.ts";
import { StoqEndpoint } from "../mod.ts";
import { userCaIdentity } from "../src/phoenix/identity.ts";
import { assertStoqError, rejection } from "./_helpers.ts";

/** Apps sharing one per-user CA (a temporary data directory). */
async function apps(
  ...names: string[]
): Promise<Phoenix[] & AsyncDisposable & { dataDir: string }> {
  const dataDir = await Deno.makeTempDir({ prefix: "stoq-phoenix-" });
  const started: Phoenix[] = [];
  for (const name of names) {
    started.push(await Phoenix.create(name, { dataDir }));
  }
  return Object.assign(started, {
    dataDir,
    async [Symbol.asyncDispose]() {
      for (const app of started) await app.close();
      await Deno.remove(dataDir, { recursive: true });
    },
  });
}

const target = (app: Phoenix) => `[::1]:${app.addr.port}`;

function pattern(size: number, seed: number): Uint8Array {
  const block = new Uint8Array(64 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = (i * 31 + seed) & 0xff;
  const out = new Uint8Array(size);
  for (let off = 0; off < size; off += block.length) {
    out.set(block.subarray(0, Math.min(block.length, size - off)), off);
  }
  return out;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function nextMessage(app: Phoenix): Promise<PhoenixMessage> {
  for await (const m of app.messages) return m;
  throw new Error("the app closed");
}

Deno.test("two apps with automatic certificates exchange messages and a 256 MiB stream, checked by SHA-256", async () => {
  await using pair = await apps("alpha", "beta");
  const [alpha, beta] = pair;
  const conn = await alpha.connect(target(beta));
  const hello = new TextEncoder().encode("hello from alpha");
  await conn.sendData(hello);
  const m = await nextMessage(beta);
  assert.equal(m.from, "alpha.stoq.local");
  assert.equal(new TextDecoder().decode(m.data), "hello from alpha");
  // And back: beta reaches alpha through its own pool.
  await (await beta.connect(target(alpha))).sendData(Uint8Array.of(1, 2, 3));
  assert.deepEqual((await nextMessage(alpha)).data, Uint8Array.of(1, 2, 3));

  const size = 256 * 1024 * 1024;
  const block = pattern(1024 * 1024, 7);
  const sent = createHash("sha256");
  let left = size / block.length;
  const receiving = (async () => {
    for await (const s of beta.streams) {
      const h = createHash("sha256");
      let bytes = 0;
      for await (const chunk of s.readable) {
        h.update(chunk);
        bytes += chunk.byteLength;
      }
      return { from: s.from, bytes, hash: h.digest("hex") };
    }
  })();
  await conn.streamData(() => {
    if (left-- === 0) return null;
    sent.update(block);
    return block;
  });
  const got = await receiving;
  assert.deepEqual(got, {
    from: "alpha.stoq.local",
    bytes: size,
    hash: sent.digest("hex"),
  });
  const stats = alpha.stats();
  assert.equal(stats.messages.sent, 1);
  assert.equal(stats.streams.sent, 1);
  assert.ok(stats.bytes.sent >= size);
  assert.equal(beta.stats().bytes.received, stats.bytes.sent);
});

Deno.test("an app's certificate names it, localhost and ::1, and a TLS client checks ::1 by address", async () => {
  await using app = await apps("named");
  assert.deepEqual(app[0].certificate.names, [
    "named.stoq.local",
    "localhost",
    "::1",
  ]);
  assert.ok(app[0].certificate.notAfter > new Date());
  // A plain server with a certificate from the same per-user CA, and a client that trusts only
  // the CA's root and reaches it by address: the IPv6 subjectAltName is what it checks.
  const id = await userCaIdentity("plain", app.dataDir);
  try {
    assert.equal(id.kind, "trustchain");
    if (id.kind !== "trustchain") return;
    const issued = await id.provision();
    const root = issued.cert.slice(issued.cert.indexOf("-----BEGIN", 10));
    await using server = new StoqEndpoint({ hostname: "::1", port: 0 });
    const listener = server.listen({
      alpnProtocols: ["by-address"],
      cert: issued.cert,
      key: issued.key,
    });
    await using client = new StoqEndpoint();
    const options = {
      hostname: "::1",
      port: listener.addr.port,
      alpnProtocols: ["by-address"],
      caCerts: [root],
    };
    const conn = await client.connect(options);
    assert.equal(conn.remoteAddr.hostname, "::1");
    conn.close();
    // A name the certificate does not carry is refused: names are checked at all.
    assertStoqError(
      await rejection(
        client.connect({ ...options, serverName: "other.stoq.local" }),
      ),
      "CERTIFICATE_REJECTED",
    );
  } finally {
    await id.close();
  }
});

Deno.test("an app whose certificate comes from another CA is refused, both ways", async () => {
  await using ours = await apps("member");
  await using theirs = await apps("stranger");
  assertStoqError(
    await rejection(theirs[0].connect(target(ours[0]))),
    "CERTIFICATE_REJECTED",
  );
  // Our client checks their server too (and their server refuses our certificate).
  const outcome = await ours[0].connect(target(theirs[0])).then(
    (conn) => rejection(conn.sendData(Uint8Array.of(1))),
    (err) => err,
  );
  assertStoqError(outcome, "CERTIFICATE_REJECTED", "CONNECTION_CLOSED");
  assert.equal(ours[0].stats().messages.received, 0);
});

Deno.test("the pool reuses a live connection without a handshake and counts it", async () => {
  await using pair = await apps("client", "server");
  const [client, server] = pair;
  for (let i = 0; i < 5; i++) {
    await (await client.connect(target(server))).sendData(Uint8Array.of(i));
    assert.deepEqual((await nextMessage(server)).data, Uint8Array.of(i));
  }
  const h = client.stats().handshakes;
  assert.equal(h.cold.count, 1);
  assert.equal(h.resumed.count, 0);
  assert.equal(h.pooled.count, 4);
  assert.equal(client.connections(target(server)).length, 1);
  assert.equal(client.stats().connections.pooled, 1);
});

Deno.test("a connection whose peer restarted is replaced on the next send", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "stoq-phoenix-" });
  try {
    await using client = await Phoenix.create("client", {
      dataDir,
      listen: false,
    });
    let port: number;
    {
      await using server = await Phoenix.create("server", { dataDir });
      port = server.addr.port;
      await (await client.connect(`[::1]:${port}`)).sendData(Uint8Array.of(1));
      assert.deepEqual((await nextMessage(server)).data, Uint8Array.of(1));
    }
    await using restarted = await Phoenix.create("server", {
      dataDir,
      listen: { hostname: "::", port },
    });
    const conn = await client.connect(`[::1]:${port}`);
    await conn.sendData(Uint8Array.of(2));
    assert.deepEqual((await nextMessage(restarted)).data, Uint8Array.of(2));
    const h = client.stats().handshakes;
    // The old connection died with its server; a new one took its place. (The restarted server
    // has new ticket keys, so that handshake is a full one.)
    assert.equal(h.cold.count + h.resumed.count, 2);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("maxConnections is never exceeded under 1,000 concurrent connects to 8 apps", async () => {
  await using servers = await apps(
    ...Array.from({ length: 8 }, (_, i) => `server-${i}`),
  );
  await using client = await Phoenix.create("client", {
    dataDir: servers.dataDir,
    listen: false,
    maxConnections: 3,
  });
  let peak = 0;
  const peers = await Promise.all(Array.from({ length: 1000 }, async (_, i) => {
    const conn = await client.connect(target(servers[i % 8]));
    peak = Math.max(peak, client.stats().connections.pooled);
    return conn.peer;
  }));
  assert.equal(new Set(peers).size, 8);
  assert.ok(peak <= 3, `${peak} connections were open at once`);
  assert.ok(client.stats().connections.pooled <= 3);
  // Each of the 8 got a connection at some point, within the cap.
  const h = client.stats().handshakes;
  assert.ok(h.cold.count + h.resumed.count >= 8);
  assert.equal(h.cold.count + h.resumed.count + h.pooled.count, 1000);
});

for (const count of [4, 10]) {
  Deno.test(`a multiplexed send over ${count} connections arrives as one message, also when one dies mid-transfer`, async () => {
    await using pair = await apps("sender", "receiver");
    const [sender, receiver] = pair;
    await sender.enableMultiplexing(target(receiver), count);
    assert.equal(sender.connections(target(receiver)).length, count);
    const data = pattern(24 * 1024 * 1024 + 12345, count);
    await sender.sendMultiplexed(target(receiver), data);
    let m = await nextMessage(receiver);
    assert.equal(m.data.byteLength, data.byteLength);
    assert.equal(sha256(m.data), sha256(data));
    assert.equal(m.from, "sender.stoq.local");

    // Close one of the connections right after the transfer began: its chunks go to the others.
    const second = pattern(16 * 1024 * 1024, count + 1);
    const sending = sender.sendMultiplexed(target(receiver), second);
    sender.connections(target(receiver))[1].close();
    await sending;
    m = await nextMessage(receiver);
    assert.equal(sha256(m.data), sha256(second));
    assert.equal(receiver.stats().messages.received, 2);
  });
}

Deno.test("a receiving handler that throws disturbs neither the other streams nor the connection", async () => {
  await using pair = await apps("sender", "receiver");
  const [sender, receiver] = pair;
  const results: string[] = [];
  (async () => {
    for await (const s of receiver.streams) {
      (async () => {
        const h = createHash("sha256");
        let first = true;
        for await (const chunk of s.readable) {
          // The handler of the stream that starts with 0 throws on its first chunk.
          if (first && chunk[0] === 0) throw new Error("handler failed");
          first = false;
          h.update(chunk);
        }
        results.push(h.digest("hex"));
      })().catch(() => {});
    }
  })();
  const conn = await sender.connect(target(receiver));
  const payloads = [0, 1, 2].map((i) => {
    const p = pattern(2 * 1024 * 1024, 1);
    p[0] = i;
    return p;
  });
  const outcomes = await Promise.allSettled(
    payloads.map((p) => conn.streamData([p])),
  );
  assertStoqError((outcomes[0] as PromiseRejectedResult).reason, "REFUSED");
  assert.equal(outcomes[1].status, "fulfilled");
  assert.equal(outcomes[2].status, "fulfilled");
  assert.deepEqual(
    results.sort(),
    [sha256(payloads[1]), sha256(payloads[2])].sort(),
  );
  // The connection is still the one it was.
  await conn.sendData(Uint8Array.of(9));
  assert.deepEqual((await nextMessage(receiver)).data, Uint8Array.of(9));
  assert.equal(sender.stats().handshakes.cold.count, 1);
});

Deno.test("a message over the receiver's limit is refused with MESSAGE_TOO_LARGE, and the next one arrives", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "stoq-phoenix-" });
  try {
    await using small = await Phoenix.create("small", {
      dataDir,
      maxMessageSize: 1024,
    });
    await using sender = await Phoenix.create("sender", {
      dataDir,
      listen: false,
    });
    const conn = await sender.connect(target(small));
    const err = assertStoqError(
      await rejection(conn.sendData(new Uint8Array(4096))),
      "MESSAGE_TOO_LARGE",
    );
    assert.match(err.message, /maxMessageSize/);
    await conn.sendData(new Uint8Array(1024));
    assert.equal((await nextMessage(small)).data.byteLength, 1024);
    assertStoqError(
      await rejection(
        sender.sendMultiplexed(target(small), new Uint8Array(4096)),
      ),
      "MESSAGE_TOO_LARGE",
    );
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("stats report throughput, counts and handshakes; metrics are Prometheus text", async () => {
  await using pair = await apps("sender", "receiver");
  const [sender, receiver] = pair;
  const conn = await sender.connect(target(receiver));
  const data = new Uint8Array(8 * 1024 * 1024);
  await conn.sendData(data);
  await nextMessage(receiver);
  const s = sender.stats();
  assert.ok(s.sendGbps > 0, "the sliding window saw the send");
  assert.ok(s.average.sendGbps > 0);
  assert.equal(s.bytes.sent, data.byteLength);
  assert.equal(s.connections.open, 1);
  assert.equal(s.handshakes.cold.count, 1);
  assert.ok(s.handshakes.cold.p50Ms > 0);
  assert.ok(s.rttMs >= 0);
  assert.ok(receiver.stats().receiveGbps > 0);
  const text = await sender.metrics();
  assert.match(
    text,
    /^phoenix_bytes_total\{direction="sent",app="sender"\} 8388608$/m,
  );
  assert.match(text, /^phoenix_connects_total\{kind="cold",app="sender"\} 1$/m);
  assert.match(text, /^# TYPE phoenix_send_gbps gauge$/m);
});

Deno.test("fromConfig reads [network] and [trustchain]; bad files and options are refused with their reasons", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stoq-phoenix-" });
  try {
    const file = `${dir}/app.toml`;
    await Deno.writeTextFile(
      file,
      `[network]\nlisten_addr = "[::1]:0"\nmax_connections = 7\nquic_config = "low_latency"\n\n[trustchain]\ndata_dir = "${dir}"\n`,
    );
    await using app = await Phoenix.fromConfig(file, "configured");
    assert.equal(app.addr.hostname, "::1");
    for (
      const [text, pattern] of [
        [
          "[network]\nmax_conections = 7\n",
          /app\.toml:2: unknown key 'max_conections' in \[network\]; allowed keys: listen_addr, max_connections/,
        ],
        [
          "[network]\nmax_connections = 0\n",
          /app\.toml:2: 'max_connections' in \[network\] is 0, but must be an integer from 1/,
        ],
        [
          '[network]\nquic_config = "fast"\n',
          /one of "high_performance", "low_latency"/,
        ],
        [
          "[routing]\nalgorithm = 1\n",
          /app\.toml:1: section \[routing\] is not a transport setting/,
        ],
        ["[network\n", /not valid TOML/],
      ] as const
    ) {
      await Deno.writeTextFile(file, text);
      const err = assertStoqError(
        await rejection(Phoenix.fromConfig(file, "configured")),
        "CONFIG_INVALID",
      );
      assert.match(err.message, pattern);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  for (
    const bad of [
      () => Phoenix.create("Not A Label"),
      () => Phoenix.create("ok", { maxConnections: 0, listen: false }),
      () => Phoenix.create("ok", { maxMessageSize: -1 }),
      () => Phoenix.create("ok", { autoCertificates: false }),
    ]
  ) {
    const err = await rejection(bad());
    assert.ok(
      err instanceof StoqError && err.code === "INVALID_ARGUMENT",
      String(err),
    );
  }
});

Deno.test("the builder sets the same options as create", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "stoq-phoenix-" });
  try {
    const builder = Phoenix.builder("built")
      .highPerformance()
      .maxConnections(100)
      .autoCertificates(true)
      .congestionControl("bbr")
      .listen({ hostname: "::1", port: 0 })
      .dataDir(dataDir);
    assert.deepEqual(builder.options(), {
      highPerformance: true,
      maxConnections: 100,
      autoCertificates: true,
      congestionControl: "bbr",
      listen: { hostname: "::1", port: 0 },
      dataDir,
    });
    await using app = await builder.build();
    await using peer = await Phoenix.create("peer", { dataDir, listen: false });
    await (await peer.connect(target(app))).sendData(Uint8Array.of(5));
    assert.deepEqual((await nextMessage(app)).data, Uint8Array.of(5));
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
