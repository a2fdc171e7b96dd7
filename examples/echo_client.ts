/**
 * Talks to the echo node started by `deno task serve`: sends a message and 8 MiB of random
 * bytes on one stream, checks the echo by SHA-256, sends a datagram, prints the stats.
 *
 * Usage: `deno run -A examples/echo_client.ts [host] [port]` (defaults: ::1 8443)
 *
 * @module
 */

import { createHash } from "node:crypto";
import { StoqEndpoint } from "../mod.ts";

const host = Deno.args[0] ?? "::1";
const port = Number(Deno.args[1] ?? 8443);
const caDir = Deno.env.get("STOQ_DEV_CERT_DIR") ??
  new URL("../build/dev-certs", import.meta.url).pathname;
const ca = await Deno.readTextFile(`${caDir}/ca.pem`);

await using endpoint = new StoqEndpoint();
const conn = await endpoint.connect({
  hostname: host,
  port,
  alpnProtocols: ["stoq-echo"],
  caCerts: [ca],
});
console.log(
  `connected to [${conn.remoteAddr.hostname}]:${conn.remoteAddr.port} (${conn.protocol})`,
);

const payload = crypto.getRandomValues(new Uint8Array(64 * 1024));
const sent = createHash("sha256");
const { readable, writable } = await conn.createBidirectionalStream();
const reading = (async () => {
  const got = createHash("sha256");
  let bytes = 0;
  for await (const chunk of readable) {
    got.update(chunk);
    bytes += chunk.byteLength;
  }
  return { bytes, sha256: got.digest("hex") };
})();
const writer = writable.getWriter();
const hello = new TextEncoder().encode("hello, STOQ\n");
sent.update(hello);
await writer.write(hello);
for (let i = 0; i < 128; i++) {
  sent.update(payload);
  await writer.write(payload);
}
await writer.close();
const echoed = await reading;
const ok = echoed.sha256 === sent.digest("hex");
console.log(
  `echoed ${echoed.bytes} bytes, SHA-256 ${ok ? "matches" : "DIFFERS"}`,
);

if (conn.maxDatagramSize > 0) {
  await conn.sendDatagram(new TextEncoder().encode("ping"));
  console.log(
    `datagram echoed: ${new TextDecoder().decode(await conn.readDatagram())}`,
  );
}
const s = conn.stats();
console.log(
  `rtt ${s.rttMs} ms, handshake ${s.handshakeMs} ms, sent ${s.bytesSent} B, lost ${s.packetsLost} packets`,
);
conn.close();
if (!ok) Deno.exit(1);
