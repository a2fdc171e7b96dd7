/**
 * The server side of `bench:connections` in its own process: a STOQ echo server on ::1 that
 * keeps every connection until the client closes it. Usage:
 *
 *   deno run -A --unstable-net bench/_connections_server.ts <cert.pem> <key.pem>
 *
 * Prints its port once listening; prints the number of connections it holds whenever a line
 * arrives on stdin.
 *
 * @module
 */

import { StoqEndpoint } from "../mod.ts";

const [certFile, keyFile] = Deno.args;
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
const endpoint = new StoqEndpoint({ hostname: "::1", port: 0 });
const listener = endpoint.listen({
  alpnProtocols: ["conns"],
  cert: await Deno.readTextFile(certFile),
  key: await Deno.readTextFile(keyFile),
  maxIdleTimeout: 300_000,
});
let held = 0;
console.log(listener.addr.port);
(async () => {
  for await (
    const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream())
  ) {
    if (line.includes("\n")) console.log(held);
  }
})();
for await (const conn of listener) {
  held++;
  conn.closed.catch(() => {}).finally(() => held--);
  (async () => {
    for await (
      const { readable, writable } of conn.incomingBidirectionalStreams
    ) {
      readable.pipeTo(writable).catch(() => {});
    }
  })().catch(() => {});
}
