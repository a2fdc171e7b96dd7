/**
 * The receiving side of the throughput benchmarks, run as its own process so that sender and
 * receiver each have a JS thread, as on two hosts. Usage:
 *
 *   deno run -A --unstable-net bench/_receiver.ts <stoq|deno> <cert.pem> <key.pem>
 *
 * Prints its port on stdout, then for every bidirectional stream hashes all bytes (SHA-256)
 * and answers "<bytes> <sha256hex>" on the same stream.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { StoqEndpoint } from "../mod.ts";

const [impl, certFile, keyFile] = Deno.args;
// Exit cleanly when the benchmark is done (so profilers can write their output).
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
const cert = await Deno.readTextFile(certFile);
const key = await Deno.readTextFile(keyFile);

async function answer(stream: {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}): Promise<void> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream.readable) {
    bytes += chunk.byteLength;
    hash.update(chunk);
  }
  const w = stream.writable.getWriter();
  await w.write(new TextEncoder().encode(`${bytes} ${hash.digest("hex")}`));
  await w.close();
}

async function serve(conn: {
  incomingBidirectionalStreams: ReadableStream<{
    readable: ReadableStream<Uint8Array>;
    writable: WritableStream<Uint8Array>;
  }>;
}): Promise<void> {
  for await (const stream of conn.incomingBidirectionalStreams) {
    answer(stream).catch(() => {/* the sender went away */});
  }
}

if (impl === "stoq") {
  const endpoint = new StoqEndpoint({ hostname: "::1" });
  const listener = endpoint.listen({ alpnProtocols: ["bench"], cert, key });
  console.log(listener.addr.port);
  for await (const conn of listener) serve(conn).catch(() => {});
} else {
  const endpoint = new Deno.QuicEndpoint({ hostname: "::1", port: 0 });
  const listener = endpoint.listen({ alpnProtocols: ["bench"], cert, key });
  console.log(endpoint.addr.port);
  for await (const incoming of listener) {
    Promise.resolve(incoming.accept()).then((conn) => serve(conn)).catch(
      () => {},
    );
  }
}
