/**
 * The receiving side of `bench:file` in its own process. Usage:
 *
 *   deno run -A --unstable-net bench/_file_server.ts <cert.pem> <key.pem>
 *
 * Prints its port. Per connection: reads a destination path from the first bidirectional
 * stream, receives the next unidirectional stream into that file with `receiveToFile()` (the
 * bytes never enter JS), then answers `<bytes>` on the bidirectional stream.
 *
 * @module
 */

import { StoqEndpoint } from "../mod.ts";

const [certFile, keyFile] = Deno.args;
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
const endpoint = new StoqEndpoint({ hostname: "::1" });
const listener = endpoint.listen({
  alpnProtocols: ["bench-file"],
  cert: await Deno.readTextFile(certFile),
  key: await Deno.readTextFile(keyFile),
});
console.log(listener.addr.port);
for await (const conn of listener) {
  (async () => {
    const control = (await conn.incomingBidirectionalStreams.getReader().read())
      .value!;
    let path = "";
    for await (const chunk of control.readable) {
      path += new TextDecoder().decode(chunk);
    }
    const stream = (await conn.incomingUnidirectionalStreams.getReader().read())
      .value!;
    const { bytes } = await stream.receiveToFile(path);
    const w = control.writable.getWriter();
    await w.write(new TextEncoder().encode(String(bytes)));
    await w.close();
  })().catch((err) => console.error(err));
}
