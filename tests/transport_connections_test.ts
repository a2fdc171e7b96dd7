/**
 * Connections at scale: shared configurations, credentials from memory, resumption and 0-RTT,
 * stream credit, and the errors users meet first.
 */
import assert from "node:assert/strict";
import {
  type StoqConnection,
  type StoqConnectOptions,
  StoqEndpoint,
} from "../mod.ts";
import {
  ALPN,
  assertStoqError,
  devCerts,
  echoOnce,
  freeze,
  LIVE_COUNTS,
  nativeCounts,
  pair,
  randomBytes,
  readAll,
  rejection,
  serveEcho,
  sha256,
  spawnEchoServer,
  writeAll,
} from "./_helpers.ts";

/** Serves echo on every connection a listener accepts, until it stops. */
function echoAll(listener: AsyncIterable<StoqConnection>): Promise<void> {
  return (async () => {
    for await (const conn of listener) serveEcho(conn).catch(() => {});
  })();
}

/** A server on ::1 that echoes on every connection, and the options that reach it. */
async function echoServer(): Promise<
  { options: StoqConnectOptions } & AsyncDisposable
> {
  const c = await devCerts();
  const server = new StoqEndpoint({ hostname: "::1", port: 0 });
  const listener = server.listen({
    alpnProtocols: [ALPN],
    cert: c.cert,
    key: c.key,
  });
  echoAll(listener);
  return {
    options: {
      hostname: "::1",
      port: listener.addr.port,
      alpnProtocols: [ALPN],
      caCerts: [c.ca],
    },
    [Symbol.asyncDispose]: () => server.close(),
  };
}

Deno.test("100 connects with the same options share one native configuration", async () => {
  const c = await devCerts();
  await using server = await echoServer();
  const { options } = server;
  await using client = new StoqEndpoint();
  const before = client.nativeCounts().configs;
  const conns = [];
  for (let i = 0; i < 100; i++) conns.push(await client.connect(options));
  assert.equal(client.nativeCounts().configs - before, 1);
  // Different trust anchors are a different configuration.
  const other = await client.connect({ ...options, caCerts: [c.ca, c.ca] });
  assert.equal(client.nativeCounts().configs - before, 2);
  const data = randomBytes(10_000);
  assert.equal((await echoOnce(conns[99], data)).hash, sha256(data));
  for (const conn of [...conns, other]) conn.close();
  await Promise.all([...conns, other].map((conn) => conn.finished));
  // Kept (idle) for the next connect, which opens nothing new.
  await client.connect(options);
  assert.equal(client.nativeCounts().configs - before, 2);
});

Deno.test("connections to one server share one UDP socket", async () => {
  await using server = await echoServer();
  const { options } = server;
  await using client = new StoqEndpoint();
  const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
  const before = fds();
  const conns = [];
  for (let i = 0; i < 200; i++) conns.push(await client.connect(options));
  // One socket for all (msquic keeps about four descriptors per socket); without sharing,
  // 200 connections take 800 here.
  const added = fds() - before;
  assert.ok(added < 20, `200 connections took ${added} descriptors`);
  const ports = new Set(conns.map((conn) => conn.localAddr!.port));
  assert.equal(ports.size, 1, `${ports.size} local ports for 200 connections`);
  const data = randomBytes(10_000);
  for (const conn of [conns[0], conns[100], conns[199]]) {
    assert.equal((await echoOnce(conn, data)).hash, sha256(data));
  }
  for (const conn of conns) conn.close();
  await Promise.all(conns.map((conn) => conn.finished));
});

Deno.test("listen and connect write no key or certificate material to disk", async () => {
  // A child process with its own empty temporary folder: any temp file would appear in it.
  const tmp = await Deno.makeTempDir({ prefix: "stoq-no-files-" });
  try {
    const script = `
      import { makeDevCertificates, StoqEndpoint } from ${
      JSON.stringify(new URL("../mod.ts", import.meta.url).href)
    };
      const c = await makeDevCertificates();
      const client = await makeDevCertificates();
      await using server = new StoqEndpoint({ hostname: "::1", port: 0 });
      const listener = server.listen({ alpnProtocols: ["t"], cert: c.cert, key: c.key,
        requireClientCertificate: true, caCerts: [client.ca] });
      const accepted = listener.accept();
      await using ep = new StoqEndpoint();
      const conn = await ep.connect({ hostname: "::1", port: listener.addr.port,
        alpnProtocols: ["t"], caCerts: [c.ca], certificate: { cert: client.cert, key: client.key } });
      await accepted;
      listener.setCertificate({ cert: c.cert, key: c.key });
      conn.close();
      console.log("ok");`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--unstable-net", script],
      env: { TMPDIR: tmp, TMP: tmp, TEMP: tmp },
    }).output();
    assert.equal(
      new TextDecoder().decode(out.stdout).trim(),
      "ok",
      new TextDecoder().decode(out.stderr),
    );
    const left = [];
    for await (const entry of Deno.readDir(tmp)) left.push(entry.name);
    assert.deepEqual(left, []);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a reconnect resumes the TLS session and reports resumed", async () => {
  await using p = await pair();
  serveEcho(p.peer).catch(() => {});
  assert.equal(p.conn.resumed, false);
  // The ticket travels right after the handshake, before any stream data: once an echo came
  // back, the client holds it.
  const data = randomBytes(1000);
  assert.equal((await echoOnce(p.conn, data)).hash, sha256(data));
  const accepted = p.listener.accept();
  const again = await p.client.connect({
    hostname: "::1",
    port: p.listener.addr.port,
    alpnProtocols: [ALPN],
    caCerts: [p.certs.ca],
  });
  assert.equal(again.resumed, true);
  assert.equal((await accepted).resumed, true);
  // Without resumption the same connect is a full handshake.
  const cold = await p.client.connect({
    hostname: "::1",
    port: p.listener.addr.port,
    alpnProtocols: [ALPN],
    caCerts: [p.certs.ca],
    resumption: false,
  });
  assert.equal(cold.resumed, false);
});

/** Connects once with an echo so that the client endpoint holds a ticket for the listener. */
async function primeTicket(client: StoqEndpoint, port: number, ca: string) {
  const first = await client.connect({
    hostname: "::1",
    port,
    alpnProtocols: [ALPN],
    caCerts: [ca],
  });
  const data = randomBytes(100);
  assert.equal((await echoOnce(first, data)).hash, sha256(data));
  first.close();
}

Deno.test("0-RTT data arrives as early data when the server accepts it", async () => {
  await using server = await spawnEchoServer();
  await using client = new StoqEndpoint();
  await primeTicket(client, server.port, server.ca);
  const conn = await client.connect(server.connectOptions({ zeroRtt: true }));
  // Handed out before the handshake; its start waits for this turn's writes, which therefore
  // travel in the first flight.
  assert.equal(conn.earlyData, true);
  const data = randomBytes(2000);
  const { readable, writable } = await conn.createBidirectionalStream();
  const w = writable.getWriter();
  await w.write(data);
  await w.close();
  assert.equal(sha256(await readAll(readable)), sha256(data));
  await conn.handshake;
  assert.equal(conn.resumed, true);
  // The first stream primed the ticket; the second came with the early data.
  assert.equal(await server.earlyData(0), false);
  assert.equal(await server.earlyData(1), true);
});

Deno.test("0-RTT data a server refuses is sent again after the handshake", async () => {
  const c = await devCerts();
  await using client = new StoqEndpoint();
  let port: number;
  {
    // A server that issues a ticket allowing early data, then goes away.
    await using first = new StoqEndpoint({ hostname: "::1", port: 0 });
    const listener = first.listen({
      alpnProtocols: [ALPN],
      cert: c.cert,
      key: c.key,
    });
    echoAll(listener);
    port = listener.addr.port;
    await primeTicket(client, port, c.ca);
  }
  // Its successor on the same port has other ticket keys: it refuses the early data. msquic
  // closes a freed connection's socket on its own thread, after the endpoint has closed, so
  // the port comes free a moment later: retry while it is still taken (polled, bounded).
  await using second = new StoqEndpoint({ hostname: "::1", port });
  const listen = () =>
    second.listen({ alpnProtocols: [ALPN], cert: c.cert, key: c.key });
  let listener: ReturnType<typeof listen> | undefined;
  for (let i = 0; listener === undefined; i++) {
    try {
      listener = listen();
    } catch (err) {
      if (i === 200 || assertStoqError(err, "ADDRESS_IN_USE") === undefined) {
        throw err;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  const early: boolean[] = [];
  (async () => {
    for await (const conn of listener) {
      (async () => {
        for await (const s of conn.incomingBidirectionalStreams) {
          early.push(s.readable.earlyData);
          await writeAll(s.writable, await readAll(s.readable));
        }
      })().catch(() => {});
    }
  })();
  const conn = await client.connect({
    hostname: "::1",
    port,
    alpnProtocols: [ALPN],
    caCerts: [c.ca],
    zeroRtt: true,
  });
  assert.equal(conn.earlyData, true);
  const data = randomBytes(5000);
  const { readable, writable } = await conn.createBidirectionalStream();
  const [, back] = await Promise.all([
    writeAll(writable, data),
    readAll(readable),
  ]);
  await conn.handshake;
  assert.equal(conn.resumed, false);
  assert.equal(sha256(back), sha256(data));
  assert.deepEqual(early, [false]);
});

Deno.test("a server with zeroRtt: false still resumes sessions but takes no early data", async () => {
  await using p = await pair({ listen: { zeroRtt: false } });
  serveEcho(p.peer).catch(() => {});
  await echoOnce(p.conn, randomBytes(10));
  const accepted = p.listener.accept();
  const conn = await p.client.connect({
    hostname: "::1",
    port: p.listener.addr.port,
    alpnProtocols: [ALPN],
    caCerts: [p.certs.ca],
    zeroRtt: true,
  });
  await conn.handshake;
  assert.equal(conn.resumed, true);
  const server = await accepted;
  const streams = server.incomingBidirectionalStreams.getReader();
  const data = randomBytes(3000);
  const { writable } = await conn.createBidirectionalStream();
  await writeAll(writable, data);
  const { value } = await streams.read();
  assert.equal(value!.readable.earlyData, false);
  assert.equal(sha256(await readAll(value!.readable)), sha256(data));
});

Deno.test("300 streams against a peer limit of 100 wait for credit, then all complete", async () => {
  await using p = await pair({
    listen: { maxConcurrentBidirectionalStreams: 100 },
  });
  let open = 0;
  let maxOpen = 0;
  (async () => {
    for await (
      const { readable, writable } of p.peer.incomingBidirectionalStreams
    ) {
      open++;
      maxOpen = Math.max(maxOpen, open);
      (async () => {
        await writeAll(writable, await readAll(readable));
        open--;
      })().catch(() => {});
    }
  })().catch(() => {/* the pair closes under it */});
  const sendBuffersBefore = p.client.nativeCounts().sendBuffers;
  const payloads = Array.from({ length: 300 }, (_, i) => randomBytes(1000 + i));
  let created = 0;
  let heldWithoutCredit = 0;
  const results = await Promise.all(payloads.map(async (data) => {
    const { readable, writable } = await p.conn.createBidirectionalStream();
    created++;
    // Never more buffered sends than the peer lets streams open.
    heldWithoutCredit = Math.max(
      heldWithoutCredit,
      p.client.nativeCounts().sendBuffers - sendBuffersBefore,
    );
    const [, back] = await Promise.all([
      writeAll(writable, data),
      readAll(readable),
    ]);
    return sha256(back) === sha256(data);
  }));
  assert.equal(created, 300);
  assert.ok(results.every(Boolean), "every echo matches");
  assert.ok(maxOpen <= 100, `the server saw ${maxOpen} streams open at once`);
  assert.ok(heldWithoutCredit <= 100, `${heldWithoutCredit} sends held`);
});

Deno.test("without waiting, a stream beyond the peer's limit fails with STREAM_LIMIT; a signal gives up waiting", async () => {
  await using p = await pair({
    listen: { maxConcurrentBidirectionalStreams: 2 },
  });
  const a = await p.conn.createBidirectionalStream();
  const b = await p.conn.createBidirectionalStream();
  assertStoqError(
    await rejection(
      p.conn.createBidirectionalStream({ waitUntilAvailable: false }),
    ),
    "STREAM_LIMIT",
  );
  const controller = new AbortController();
  const waiting = p.conn.createBidirectionalStream({
    signal: controller.signal,
  });
  controller.abort(new Error("changed my mind"));
  const err = assertStoqError(await rejection(waiting), "ABORTED");
  assert.equal((err.cause as Error).message, "changed my mind");
  assertStoqError(
    await rejection(
      p.conn.createBidirectionalStream({ signal: controller.signal }),
    ),
    "ABORTED",
  );
  // The two open streams still work, and the aborted ones hold nothing.
  const data = randomBytes(100);
  serveEcho(p.peer).catch(() => {});
  await writeAll(a.writable, data);
  assert.equal(sha256(await readAll(a.readable)), sha256(data));
  await writeAll(b.writable, data);
  assert.equal(sha256(await readAll(b.readable)), sha256(data));
});

Deno.test("a port taken by another listener is ADDRESS_IN_USE, in this process and from another", async () => {
  const c = await devCerts();
  const listen = { alpnProtocols: [ALPN], cert: c.cert, key: c.key };
  await using first = new StoqEndpoint({ hostname: "::1", port: 0 });
  const port = first.listen(listen).addr.port;
  const before = first.nativeCounts();
  for (const hostname of ["::1", "::"]) {
    await using second = new StoqEndpoint({ hostname, port });
    assert.throws(() => second.listen(listen), (e) => {
      assertStoqError(e, "ADDRESS_IN_USE");
      return true;
    });
  }
  await using other = await spawnEchoServer();
  await using third = new StoqEndpoint({ hostname: "::1", port: other.port });
  const err = assertStoqError(
    (() => {
      try {
        third.listen(listen);
      } catch (e) {
        return e;
      }
    })(),
    "ADDRESS_IN_USE",
  );
  assert.match(err.message, /already taken/);
  const after = first.nativeCounts();
  assert.equal(after.listeners, before.listeners);
  assert.equal(after.configs, before.configs);
});

Deno.test("a host name without an IPv6 address is HOST_NOT_FOUND, naming the host", async () => {
  await using client = new StoqEndpoint();
  const err = assertStoqError(
    await rejection(client.connect({
      hostname: "no-such-host.invalid",
      port: 4433,
      alpnProtocols: [ALPN],
    })),
    "HOST_NOT_FOUND",
  );
  assert.match(err.message, /no-such-host\.invalid/);
});

Deno.test("the unspecified and multicast addresses are refused as connect targets before anything opens", async () => {
  const before = await nativeCounts();
  await using client = new StoqEndpoint();
  for (const hostname of ["::", "[::]", "ff02::1", "FF05::2"]) {
    assertStoqError(
      await rejection(
        client.connect({ hostname, port: 4433, alpnProtocols: [ALPN] }),
      ),
      "INVALID_ARGUMENT",
    );
  }
  const after = client.nativeCounts();
  for (const k of LIVE_COUNTS) assert.equal(after[k], before[k], k);
});

Deno.test("a server that never answers the handshake is HANDSHAKE_TIMEOUT", async () => {
  // A UDP socket that swallows every packet.
  const silent = Deno.listenDatagram({
    hostname: "::1",
    port: 0,
    transport: "udp",
  });
  const swallowing = (async () => {
    try {
      while (true) await silent.receive();
    } catch { /* closed */ }
  })();
  try {
    await using client = new StoqEndpoint();
    const err = assertStoqError(
      await rejection(client.connect({
        hostname: "::1",
        port: (silent.addr as Deno.NetAddr).port,
        alpnProtocols: [ALPN],
        handshakeTimeout: 300,
      })),
      "HANDSHAKE_TIMEOUT",
    );
    assert.match(err.message, /handshakeTimeout/);
  } finally {
    silent.close();
    await swallowing;
  }
});

Deno.test("connect gives up with ABORTED when its signal fires during the handshake", async () => {
  const silent = Deno.listenDatagram({
    hostname: "::1",
    port: 0,
    transport: "udp",
  });
  try {
    await using client = new StoqEndpoint();
    const controller = new AbortController();
    const connecting = client.connect({
      hostname: "::1",
      port: (silent.addr as Deno.NetAddr).port,
      alpnProtocols: [ALPN],
      signal: controller.signal,
    });
    controller.abort();
    assertStoqError(await rejection(connecting), "ABORTED");
    assertStoqError(
      await rejection(client.connect({
        hostname: "::1",
        port: 1,
        alpnProtocols: [ALPN],
        signal: controller.signal,
      })),
      "ABORTED",
    );
  } finally {
    silent.close();
  }
});

Deno.test("every bad argument is INVALID_ARGUMENT and opens nothing", async () => {
  const c = await devCerts();
  const before = await nativeCounts();
  await using client = new StoqEndpoint();
  const good = { hostname: "::1", port: 4433, alpnProtocols: [ALPN] };
  const badConnects: unknown[] = [
    undefined,
    null,
    "::1",
    { ...good, port: 70000 },
    { ...good, port: 0 },
    { ...good, port: "443" },
    { ...good, alpnProtocols: [] },
    { ...good, maxIdleTimeout: -1 },
    { ...good, maxIdleTimeout: 1.5 },
    { ...good, handshakeTimeout: "10s" },
    { ...good, maxConcurrentBidirectionalStreams: 70000 },
    { ...good, streamReceiveWindow: 10 },
    { ...good, disconnectTimeout: 0 },
    { ...good, maxIdleTimeout: 0, keepAliveInterval: 0 },
    { ...good, congestionControl: "reno" },
    { ...good, datagrams: "yes" },
    { ...good, caCerts: "pem" },
    { ...good, caCerts: ["not pem"] },
    { ...good, serverName: "" },
    { ...good, verifyPeer: true },
    { ...good, zeroRtt: 1 },
    { ...good, signal: {} },
    { ...good, certificate: { cert: c.cert } },
  ];
  for (const options of badConnects) {
    assertStoqError(
      // deno-lint-ignore no-explicit-any
      await rejection(client.connect(options as any)),
      "INVALID_ARGUMENT",
    );
  }
  const badListens: unknown[] = [
    undefined,
    { alpnProtocols: [ALPN], cert: "x", key: c.key },
    { alpnProtocols: [ALPN], cert: c.cert, key: c.key, zeroRtt: "no" },
    { alpnProtocols: [ALPN], cert: c.cert, key: c.key, keepAliveInterval: -5 },
  ];
  for (const options of badListens) {
    // deno-lint-ignore no-explicit-any
    assert.throws(() => client.listen(options as any), (e) => {
      assertStoqError(e, "INVALID_ARGUMENT");
      return true;
    });
  }
  for (const options of [null, { port: -1 }, { profile: "fast" }]) {
    // deno-lint-ignore no-explicit-any
    assert.throws(() => new StoqEndpoint(options as any), (e) => {
      assertStoqError(e, "INVALID_ARGUMENT");
      return true;
    });
  }
  // A key that does not belong to the certificate: OpenSSL's reason, nothing left open.
  const other = await devCerts().then(async () => {
    const { makeDevCertificates } = await import("../mod.ts");
    return await makeDevCertificates();
  });
  const err = (() => {
    try {
      client.listen({ alpnProtocols: [ALPN], cert: c.cert, key: other.key });
    } catch (e) {
      return e;
    }
  })();
  assert.match(
    assertStoqError(err, "INVALID_ARGUMENT").message,
    /does not belong/,
  );
  const after = client.nativeCounts();
  for (const k of LIVE_COUNTS) assert.equal(after[k], before[k], k);
});

Deno.test("bad arguments to connection and stream methods are INVALID_ARGUMENT", async () => {
  await using p = await pair();
  // deno-lint-ignore no-explicit-any
  const conn = p.conn as any;
  assertStoqError(
    await rejection(conn.sendDatagram("text")),
    "INVALID_ARGUMENT",
  );
  assert.throws(() => conn.close({ closeCode: -1 }), (e) => {
    assertStoqError(e, "INVALID_ARGUMENT");
    return true;
  });
  assertStoqError(
    await rejection(conn.createBidirectionalStream({ waitUntilAvailable: 1 })),
    "INVALID_ARGUMENT",
  );
  const { writable } = await p.conn.createBidirectionalStream();
  const w = writable.getWriter();
  assertStoqError(
    // deno-lint-ignore no-explicit-any
    await rejection(w.write("text" as any)),
    "INVALID_ARGUMENT",
  );
});

Deno.test("with maxIdleTimeout 0 on both sides, keep-alives surface a frozen peer as IDLE_TIMEOUT", async () => {
  await using server = await spawnEchoServer({ maxIdleTimeout: 0 });
  await using client = new StoqEndpoint();
  const conn = await client.connect(
    server.connectOptions({
      maxIdleTimeout: 0,
      keepAliveInterval: 200,
      disconnectTimeout: 1000,
    }),
  );
  const { readable, writable } = await conn.createBidirectionalStream();
  const w = writable.getWriter();
  await w.write(randomBytes(100));
  const reader = readable.getReader();
  assert.equal((await reader.read()).value!.byteLength, 100);
  // The peer stops answering (its socket stays open, so nothing tells us it is gone).
  await freeze(server.child, true);
  const pending = reader.read();
  // Documented bound: keepAliveInterval + disconnectTimeout (here 1.2 s). A broken build would
  // hang forever; this guard turns that into a failure.
  const guard = new Promise<never>((_, reject) => {
    const t = setTimeout(
      () => reject(new Error("still pending after 20 s")),
      20_000,
    );
    Deno.unrefTimer(t);
  });
  assertStoqError(
    await rejection(Promise.race([pending, guard])),
    "IDLE_TIMEOUT",
  );
  assertStoqError(await rejection(conn.closed), "IDLE_TIMEOUT");
});

Deno.test("mutual TLS sessions resume, also from the ticket of a resumed session, and both sides keep the peer certificate verified when they began", async () => {
  const c = await devCerts();
  const { makeDevCertificates } = await import("../mod.ts");
  const clientCerts = await makeDevCertificates();
  const seen: number[] = [];
  await using server = new StoqEndpoint({ hostname: "::1", port: 0 });
  const listener = server.listen({
    alpnProtocols: [ALPN],
    cert: c.cert,
    key: c.key,
    requireClientCertificate: true,
    verifyPeer: ({ leaf }) => {
      seen.push(leaf.byteLength);
      return true;
    },
  });
  await using client = new StoqEndpoint();
  const options = {
    hostname: "::1",
    port: listener.addr.port,
    alpnProtocols: [ALPN],
    verifyPeer: () => true,
    certificate: { cert: clientCerts.cert, key: clientCerts.key },
  };
  const accepted = [listener.accept(), listener.accept(), listener.accept()];
  for (const p of accepted) p.then((conn) => serveEcho(conn)).catch(() => {});
  const first = await client.connect(options);
  await echoOnce(first, randomBytes(10));
  const second = await client.connect(options);
  assert.equal(second.resumed, true);
  // The echo's answer follows the session ticket the server sent when `second` connected.
  await echoOnce(second, randomBytes(10));
  // Resumes with the ticket of the resumed session `second`, which must still name the client.
  const third = await client.connect(options);
  assert.equal(third.resumed, true);
  assert.equal(seen.length, 1, "a resumed session was verified again");
  const [a, b, d] = await Promise.all(accepted);
  // The client's certificate on the server, the server's on the client, also when resumed.
  assert.ok(a.peerCertificate && b.peerCertificate && d.peerCertificate);
  assert.equal(sha256(b.peerCertificate.leaf), sha256(a.peerCertificate.leaf));
  assert.equal(sha256(d.peerCertificate.leaf), sha256(a.peerCertificate.leaf));
  assert.ok(
    first.peerCertificate && second.peerCertificate && third.peerCertificate,
  );
  assert.equal(
    sha256(second.peerCertificate.leaf),
    sha256(first.peerCertificate.leaf),
  );
  assert.equal(
    sha256(third.peerCertificate.leaf),
    sha256(first.peerCertificate.leaf),
  );
});

Deno.test("a client without a certificate is refused by a listener that requires one", async () => {
  const c = await devCerts();
  await using server = new StoqEndpoint({ hostname: "::1", port: 0 });
  const listener = server.listen({
    alpnProtocols: [ALPN],
    cert: c.cert,
    key: c.key,
    requireClientCertificate: true,
    caCerts: [c.ca],
  });
  const accepting = listener.accept();
  accepting.catch(() => {});
  await using client = new StoqEndpoint();
  // TLS 1.3: the client may finish before the server refuses; the connection ends either way.
  const outcome = await client.connect({
    hostname: "::1",
    port: listener.addr.port,
    alpnProtocols: [ALPN],
    caCerts: [c.ca],
  }).then((conn) => rejection(conn.closed), (err) => err);
  assertStoqError(outcome, "CERTIFICATE_REJECTED", "CONNECTION_CLOSED");
  listener.stop();
  assertStoqError(await rejection(accepting), "CLOSED");
});

Deno.test("a stream given up while waiting for credit keeps its place in line: the peer sees it reset, then the next waiter opens", async () => {
  await using p = await pair({
    listen: { maxConcurrentBidirectionalStreams: 1 },
  });
  const first = await p.conn.createBidirectionalStream();
  const controller = new AbortController();
  const givenUp = p.conn.createBidirectionalStream({
    signal: controller.signal,
  });
  const next = p.conn.createBidirectionalStream();
  controller.abort();
  assertStoqError(await rejection(givenUp), "ABORTED");
  const incoming = p.peer.incomingBidirectionalStreams.getReader();
  // The first stream ends both ways; the peer frees its credit.
  await writeAll(first.writable, new Uint8Array([1]));
  const { value: one } = await incoming.read();
  assert.equal((await readAll(one!.readable)).byteLength, 1);
  await one!.writable.close();
  assert.equal((await readAll(first.readable)).byteLength, 0);
  // The stream given up opens next, already reset; taking it frees the credit for `next`.
  const { value: two } = await incoming.read();
  assertStoqError(
    await rejection(two!.readable.getReader().read()),
    "PEER_RESET",
  );
  const opened = await next;
  await writeAll(opened.writable, new Uint8Array([2, 3]));
  const { value: three } = await incoming.read();
  assert.equal((await readAll(three!.readable)).byteLength, 2);
});
