/**
 * `deno task bench:connections`: 10,000 concurrent connections from this process to a STOQ
 * server in another process on ::1, each doing one echo whose bytes are checked (SHA-256), all
 * held open together. Prints the time to establish all of them, both processes' resident memory
 * per connection, and last `connections held: <number>` (connections alive on both sides once
 * all were made).
 *
 * Env: STOQ_CONNECTIONS (default 10000), STOQ_CONNECT_IN_FLIGHT (handshakes started at once,
 * default 256).
 *
 * @module
 */

import { StoqEndpoint } from "../mod.ts";
import { connectAll, rssOf } from "./_echo.ts";

const COUNT = Number(Deno.env.get("STOQ_CONNECTIONS") ?? 10_000);
const IN_FLIGHT = Number(Deno.env.get("STOQ_CONNECT_IN_FLIGHT") ?? 256);
const build = new URL("../build/dev-certs/", import.meta.url).pathname;
const ca = await Deno.readTextFile(`${build}ca.pem`);

const server = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    "--unstable-net",
    new URL("./_connections_server.ts", import.meta.url).pathname,
    `${build}cert.pem`,
    `${build}key.pem`,
  ],
  stdin: "piped",
  stdout: "piped",
}).spawn();
const lines = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
let buffered = "";
async function nextLine(): Promise<string> {
  while (!buffered.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) throw new Error("the server exited");
    buffered += value;
  }
  const i = buffered.indexOf("\n");
  const line = buffered.slice(0, i);
  buffered = buffered.slice(i + 1);
  return line;
}
const serverStdin = server.stdin.getWriter();
async function serverHeld(): Promise<number> {
  await serverStdin.write(new TextEncoder().encode("?\n"));
  return Number(await nextLine());
}

const port = Number(await nextLine());
await using client = new StoqEndpoint();
const options = {
  hostname: "::1",
  port,
  alpnProtocols: ["conns"],
  caCerts: [ca],
  maxIdleTimeout: 300_000,
};
// Warm-up (JIT, library, configuration), then the baseline memory of both processes.
{
  const conn = await client.connect(options);
  conn.close();
  await conn.finished;
}
const clientBase = Deno.memoryUsage().rss;
const heapBase = Deno.memoryUsage().heapUsed;
const serverBase = rssOf(server.pid);

const { conns, seconds, died } = await connectAll(
  client,
  options,
  COUNT,
  IN_FLIGHT,
);
console.log(
  `${COUNT} connections established and echoed in ${seconds.toFixed(1)} s (${
    (COUNT / seconds).toFixed(0)
  }/s, ${IN_FLIGHT} handshakes in flight)`,
);
const clientRss = Deno.memoryUsage().rss - clientBase;
console.log(
  `  (client JS heap ${
    ((Deno.memoryUsage().heapUsed - heapBase) / COUNT / 1024).toFixed(1)
  } KiB per connection)`,
);
const serverRss = rssOf(server.pid) - serverBase;
console.log(
  `resident memory per connection: client ${
    (clientRss / COUNT / 1024).toFixed(1)
  } KiB, server ${(serverRss / COUNT / 1024).toFixed(1)} KiB`,
);
const onServer = await serverHeld();
const alive = conns.filter((c) => c.remoteAddr.port !== 0).length - died();
console.log(`server holds ${onServer}; client holds ${alive}; died ${died()}`);
for (const conn of conns) conn.close();
await Promise.all(conns.map((c) => c.finished));
server.kill();
await server.status;
console.log(`connections held: ${Math.min(alive, onServer)}`);
