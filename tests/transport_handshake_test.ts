import assert from "node:assert/strict";
import { pair } from "./_helpers.ts";

Deno.test("handshake negotiates ALPN over IPv6 and reports sane stats", async () => {
  await using p = await pair();
  assert.equal(p.conn.protocol, "stoq-test");
  assert.equal(p.peer.protocol, "stoq-test");
  assert.equal(p.conn.remoteAddr.hostname, "::1");
  assert.equal(p.conn.remoteAddr.port, p.listener.addr.port);
  assert.equal(p.peer.remoteAddr.hostname, "::1");
  const s = p.conn.stats();
  console.log(s);
  assert.ok(s.rttMs > 0);
  assert.ok(s.bytesSent > 0);
  assert.ok(s.handshakeMs > 0);
});
