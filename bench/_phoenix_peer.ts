/**
 * A Phoenix app in its own process for `bench:pool` and `bench:phoenix`: accepts on ::1 and reads
 * every message and stream it is sent (counting bytes, keeping nothing). Prints its port. Uses
 * the per-user CA of $STOQ_HOME, like the bench that starts it.
 *
 *   deno run -A --unstable-net bench/_phoenix_peer.ts [--high-performance]
 *
 * @module
 */

import { Phoenix } from "../mod.ts";

Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
const app = await Phoenix.create("bench-peer", {
  listen: { hostname: "::1", port: 0 },
  highPerformance: Deno.args.includes("--high-performance"),
  maxMessageSize: 1024 * 1024 * 1024,
  maxConnections: 1000,
});
(async () => {
  for await (const _ of app.messages) { /* counted by stats */ }
})();
(async () => {
  for await (const s of app.streams) {
    (async () => {
      for await (const _ of s.readable) { /* counted */ }
    })().catch(() => {});
  }
})();
console.log(app.addr.port);
