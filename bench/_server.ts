/**
 * A throughput server in its own process, so that each side has its own JS thread, as on two
 * hosts. Usage:
 *
 *   deno run -A --unstable-net bench/_server.ts <stoq|deno> <cert.pem> <key.pem>
 *
 * Prints its port, then serves the protocol of bench/_throughput.ts until killed.
 *
 * @module
 */

import { serveBench, type Transport } from "./_throughput.ts";

const [transport, certFile, keyFile] = Deno.args;
// Exit cleanly when the benchmark is done (so profilers can write their output).
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
const server = serveBench(
  transport as Transport,
  await Deno.readTextFile(certFile),
  await Deno.readTextFile(keyFile),
);
console.log(server.port);
