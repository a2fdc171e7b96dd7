import assert from "node:assert/strict";
import { StoqEndpoint } from "../mod.ts";
import {
  ALPN,
  devCerts,
  hashStream,
  randomBytes,
  sha256,
  writeAll,
} from "./_helpers.ts";

const SIZE = 4 * 1024 * 1024;

type Stream = {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
};

/** Echoes the first stream a connection receives, hashing what arrived. */
async function echoFirstStream(
  conn: { incomingBidirectionalStreams: ReadableStream<Stream> },
): Promise<{ hash: string; bytes: number }> {
  const reader = conn.incomingBidirectionalStreams.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const [forHash, forEcho] = value!.readable.tee();
  const [received] = await Promise.all([
    hashStream(forHash),
    forEcho.pipeTo(value!.writable),
  ]);
  return received;
}

Deno.test("a Deno.connectQuic client talks to a STOQ server: payload echoed, hashes equal", async () => {
  const certs = await devCerts();
  await using server = new StoqEndpoint({ hostname: "::1" });
  const listener = server.listen({
    alpnProtocols: [ALPN],
    cert: certs.cert,
    key: certs.key,
  });
  const serverSide = listener.accept().then(echoFirstStream);

  const payload = randomBytes(SIZE);
  const conn = await Deno.connectQuic({
    hostname: "::1",
    port: listener.addr.port,
    alpnProtocols: [ALPN],
    caCerts: [certs.ca],
  });
  try {
    assert.equal(conn.protocol, ALPN);
    const { readable, writable } = await conn.createBidirectionalStream();
    const [echoed] = await Promise.all([
      hashStream(readable),
      writeAll(writable, payload),
    ]);
    const received = await serverSide;
    assert.equal(received.bytes, SIZE);
    assert.equal(
      received.hash,
      sha256(payload),
      "STOQ server received the bytes Deno sent",
    );
    assert.equal(echoed.bytes, SIZE);
    assert.equal(
      echoed.hash,
      sha256(payload),
      "Deno client got the bytes back",
    );
  } finally {
    conn.close();
    await conn.closed.catch(() => {});
  }
});

Deno.test("a STOQ client talks to a Deno.QuicEndpoint server: payload echoed, hashes equal", async () => {
  const certs = await devCerts();
  const endpoint = new Deno.QuicEndpoint({ hostname: "::1", port: 0 });
  const listener = endpoint.listen({
    alpnProtocols: [ALPN],
    cert: certs.cert,
    key: certs.key,
  });
  const serverSide = (async () => {
    const conn = await listener.accept();
    const received = await echoFirstStream(conn);
    await conn.closed.catch(() => {});
    return received;
  })();
  try {
    const payload = randomBytes(SIZE);
    await using client = new StoqEndpoint();
    const conn = await client.connect({
      hostname: "::1",
      port: endpoint.addr.port,
      alpnProtocols: [ALPN],
      caCerts: [certs.ca],
    });
    assert.equal(conn.protocol, ALPN);
    const { readable, writable } = await conn.createBidirectionalStream();
    const [echoed] = await Promise.all([
      hashStream(readable),
      writeAll(writable, payload),
    ]);
    assert.equal(echoed.bytes, SIZE);
    assert.equal(
      echoed.hash,
      sha256(payload),
      "STOQ client got the bytes back",
    );
    conn.close();
    const received = await serverSide;
    assert.equal(
      received.hash,
      sha256(payload),
      "Deno server received the bytes STOQ sent",
    );
  } finally {
    listener.stop();
    endpoint.close();
  }
});
