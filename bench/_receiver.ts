/**
 * The receiving side of the throughput benchmarks as its own process, so that sender and
 * receiver each have their own JS thread, as on two hosts. Usage:
 *
 *   deno run -A --unstable-net bench/_receiver.ts <stoq|deno> <cert.pem> <key.pem>
 *
 * Prints its port, then answers every stream as {@linkcode serveReceiver} does.
 *
 * @module
 */

import { serveReceiver, type Transport } from "./_throughput.ts";

const [transport, certFile, keyFile] = Deno.args;
// Exit cleanly when the benchmark is done (so profilers can write their output).
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
const receiver = serveReceiver(
  transport as Transport,
  await Deno.readTextFile(certFile),
  await Deno.readTextFile(keyFile),
);
console.log(receiver.port);
