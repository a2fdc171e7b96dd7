/**
 * Talks to the echo service of a STOQ node started by `deno task serve`: sends a message and
 * 8 MiB of random bytes on one stream, checks the echo by SHA-256, sends a datagram, prints the
 * stats.
 *
 * Usage: `deno run -A examples/echo_client.ts [host] [port] [--fingerprint HEX]`
 * (defaults: ::1 8443). Trust in the node's CA: with `--fingerprint` (the `root_sha256` the node
 * logs when it starts), the root is fetched from the node's TrustChain service and accepted only
 * if its SHA-256 matches; without it, the root file a node on this machine wrote
 * (`$STOQ_HOME/node/root.pem`, else `~/.local/share/stoq/node/root.pem`).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { phoenixDataDir, StoqEndpoint, TrustChainClient } from "../mod.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { fingerprint: { type: "string" } },
  allowPositionals: true,
});
const host = positionals[0] ?? "::1";
const port = Number(positionals[1] ?? 8443);
await using endpoint = new StoqEndpoint();
const root = values.fingerprint
  ? await TrustChainClient.fetchRoot(endpoint, {
    hostname: host,
    port,
    fingerprint: values.fingerprint,
  })
  : await Deno.readTextFile(`${phoenixDataDir()}/node/root.pem`);
const conn = await endpoint.connect({
  hostname: host,
  port,
  alpnProtocols: ["stoq-echo"],
  caCerts: [root],
  // The node's certificate names node.<domain>, trustchain.<domain> and localhost.
  serverName: "node.stoq.local",
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
