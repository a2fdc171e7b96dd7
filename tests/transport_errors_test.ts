import assert from "node:assert/strict";
import { makeDevCertificates, StoqEndpoint } from "../mod.ts";
import {
  ALPN,
  assertStoqError,
  devCerts,
  LIVE_COUNTS,
  nativeCounts,
  pair,
  randomBytes,
  rejection,
  sha256,
} from "./_helpers.ts";

Deno.test("datagrams travel both ways with their bytes intact", async () => {
  await using p = await pair();
  assert.ok(p.conn.maxDatagramSize > 0, "client may send datagrams");
  assert.ok(p.peer.maxDatagramSize > 0, "server may send datagrams");
  const up = randomBytes(Math.min(1000, p.conn.maxDatagramSize));
  const down = randomBytes(Math.min(900, p.peer.maxDatagramSize));
  const gotUp = p.peer.readDatagram();
  const gotDown = p.conn.readDatagram();
  await p.conn.sendDatagram(up);
  await p.peer.sendDatagram(down);
  assert.equal(sha256(await gotUp), sha256(up));
  assert.equal(sha256(await gotDown), sha256(down));
});

Deno.test("a datagram above maxDatagramSize is refused with DATAGRAM_TOO_LARGE", async () => {
  await using p = await pair();
  const max = p.conn.maxDatagramSize;
  assert.ok(max > 0);
  assertStoqError(
    await rejection(p.conn.sendDatagram(new Uint8Array(max + 1))),
    "DATAGRAM_TOO_LARGE",
  );
  // The limit itself is fine.
  const got = p.peer.readDatagram();
  const exact = randomBytes(max);
  await p.conn.sendDatagram(exact);
  assert.equal(sha256(await got), sha256(exact));
});

Deno.test("sending a datagram to a peer that disabled them fails with DATAGRAM_DISABLED", async () => {
  await using p = await pair({ listen: { datagrams: false } });
  assert.equal(p.conn.maxDatagramSize, 0);
  assertStoqError(
    await rejection(p.conn.sendDatagram(new Uint8Array(10))),
    "DATAGRAM_DISABLED",
  );
  // The server still may send to the client, which accepts them.
  assert.ok(p.peer.maxDatagramSize > 0);
});

Deno.test("IPv4 addresses are rejected with IPV4_REJECTED before anything native opens", async () => {
  const c = await devCerts();
  const before = await nativeCounts();
  for (
    const hostname of [
      "127.0.0.1",
      "0.0.0.0",
      "::ffff:127.0.0.1",
      "[::ffff:10.0.0.1]",
    ]
  ) {
    assert.throws(() => new StoqEndpoint({ hostname }), (e) => {
      assertStoqError(e, "IPV4_REJECTED");
      return true;
    }, hostname);
  }
  await using client = new StoqEndpoint();
  for (const hostname of ["127.0.0.1", "::ffff:127.0.0.1", "::FFFF:7f00:1"]) {
    const err = await rejection(
      client.connect({
        hostname,
        port: 4433,
        alpnProtocols: [ALPN],
        caCerts: [c.ca],
      }),
    );
    assertStoqError(err, "IPV4_REJECTED");
  }
  const after = client.nativeCounts();
  for (const k of LIVE_COUNTS) assert.equal(after[k], before[k], k);
});

Deno.test("an IPv4 client (Deno.connectQuic from 127.0.0.1) gets no connection from a listener on ::", async () => {
  const c = await devCerts();
  await using server = new StoqEndpoint({ hostname: "::", port: 0 });
  const listener = server.listen({
    alpnProtocols: [ALPN],
    cert: c.cert,
    key: c.key,
  });
  const err = await rejection(
    (async () =>
      await Deno.connectQuic({
        hostname: "127.0.0.1",
        port: listener.addr.port,
        alpnProtocols: [ALPN],
        caCerts: [c.ca],
        maxIdleTimeout: 1000,
      }))(),
  );
  assert.ok(err instanceof Error, String(err));
  // Same port, IPv6: the listener does serve (so the refusal above was about the family).
  const accepted = listener.accept();
  const ok = await Deno.connectQuic({
    hostname: "::1",
    port: listener.addr.port,
    alpnProtocols: [ALPN],
    caCerts: [c.ca],
    serverName: "localhost",
  });
  const conn = await accepted;
  assert.equal(conn.remoteAddr.hostname, "::1");
  ok.close();
});

Deno.test("a server certificate from an untrusted CA is rejected with CERTIFICATE_REJECTED", async () => {
  const other = await makeDevCertificates();
  const err = await rejection(pair({ connect: { caCerts: [other.ca] } }));
  assertStoqError(err, "CERTIFICATE_REJECTED");
  const counts = await nativeCounts();
  for (const k of LIVE_COUNTS) assert.equal(counts[k], 0, k);
});

Deno.test("an ALPN mismatch is rejected with ALPN_MISMATCH", async () => {
  const err = await rejection(
    pair({ connect: { alpnProtocols: ["not-offered"] } }),
  );
  assertStoqError(err, "ALPN_MISMATCH");
  const counts = await nativeCounts();
  for (const k of LIVE_COUNTS) assert.equal(counts[k], 0, k);
});
