/**
 * The Phoenix demo from the seed documents: one line starts an app with a certificate from the
 * per-user TrustChain CA; it connects, sends data and reports its throughput. A peer app is
 * started here too, so the demo runs on its own.
 *
 *   deno run -A --unstable-net examples/phoenix_demo.ts [MiB, default 256]
 *
 * @module
 */

import { Phoenix } from "../mod.ts";

const mib = Number(Deno.args[0] ?? 256);

// The peer takes messages up to the demo's size (64 MiB unless told).
await using peer = await Phoenix.create("demo-peer", {
  maxMessageSize: mib * 1024 * 1024,
});
const arrived = (async () => {
  for await (const m of peer.messages) return m;
})();

// Simple one-line initialization, with automatic certificates.
await using phoenix = await Phoenix.create("my-app");

// Connect (pooled), send one message, and see it arrive whole.
const conn = await phoenix.connect(`[::1]:${peer.addr.port}`);
const data = crypto.getRandomValues(new Uint8Array(65536));
const payload = new Uint8Array(mib * 1024 * 1024);
for (let off = 0; off < payload.length; off += data.length) {
  payload.set(data, off);
}
const t0 = performance.now();
await conn.sendData(payload);
const seconds = (performance.now() - t0) / 1000;
const message = await arrived;
console.log(
  `sent ${mib} MiB to ${conn.peer}; demo-peer received ${
    message!.data.byteLength
  } bytes from ${message!.from}`,
);

// Built-in monitoring.
const stats = phoenix.stats();
console.log(
  `Throughput: ${((payload.length * 8) / seconds / 1e9).toFixed(2)} Gbps`,
);
console.log(
  `Connections: ${stats.connections.open} open; handshakes: ${stats.handshakes.cold.count} cold (p50 ${
    stats.handshakes.cold.p50Ms.toFixed(1)
  } ms)`,
);
