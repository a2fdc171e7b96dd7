/**
 * The server side of `bench:handshake` in its own process: accepts every connection on ::1 and
 * lets the client close it. Usage:
 *
 *   deno run -A --unstable-net bench/_handshake_server.ts <stoq|deno> <cert.pem> <key.pem>
 *
 * Prints its port once listening.
 *
 * @module
 */

import { StoqEndpoint } from "../mod.ts";

const [transport, certFile, keyFile] = Deno.args;
const cert = await Deno.readTextFile(certFile);
const key = await Deno.readTextFile(keyFile);
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));

if (transport === "stoq") {
  const endpoint = new StoqEndpoint({ hostname: "::1", port: 0 });
  const listener = endpoint.listen({
    alpnProtocols: ["hs"],
    cert,
    key,
    maxIdleTimeout: 60_000,
    zeroRtt: true,
  });
  console.log(listener.addr.port);
  for await (const _conn of listener) {
    // Accepted; the client closes it.
  }
} else {
  const endpoint = new Deno.QuicEndpoint({ hostname: "::1", port: 0 });
  const listener = endpoint.listen({ alpnProtocols: ["hs"], cert, key });
  console.log(endpoint.addr.port);
  for await (const incoming of listener) {
    Promise.resolve(incoming.accept()).catch(() => {});
  }
}
