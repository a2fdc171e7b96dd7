/**
 * `deno bench`: one connection, one stream, 64 MiB upload with 64 KiB writes to a server in
 * its own process that SHA-256-checks every byte; STOQ against Deno's built-in QUIC (the
 * baseline). Connection setup is not timed.
 *
 * @module
 */

import {
  denoRun,
  type Scenario,
  type Server,
  startServer,
  stoqRun,
} from "./_throughput.ts";

const upload: Scenario = {
  kind: "up",
  bytes: 64 * 1024 * 1024,
  write: 64 * 1024,
};
const servers: Server[] = [
  await startServer("stoq"),
  await startServer("deno"),
];
globalThis.addEventListener("unload", () => {
  for (const s of servers) s[Symbol.asyncDispose]();
});

Deno.bench({
  name: "STOQ: 64 MiB upload, one stream",
  group: "throughput",
  n: 10,
  warmup: 1,
  async fn(b) {
    await stoqRun(servers[0], upload, b);
  },
});

Deno.bench({
  name: "Deno QUIC: 64 MiB upload, one stream",
  group: "throughput",
  baseline: true,
  n: 10,
  warmup: 1,
  async fn(b) {
    await denoRun(servers[1], upload, b);
  },
});
