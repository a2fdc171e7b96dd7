/**
 * `deno bench`: one connection, one stream, 64 MiB upload with 64 KiB writes to a receiver
 * process that SHA-256-checks every byte; STOQ against Deno's built-in QUIC (the baseline).
 * Connection setup is not timed.
 *
 * @module
 */

import {
  denoUpload,
  makePayload,
  type Receiver,
  startReceiver,
  stoqUpload,
} from "./_throughput.ts";

const payload = makePayload(64 * 1024 * 1024);
const receivers: Receiver[] = [
  await startReceiver("stoq"),
  await startReceiver("deno"),
];
globalThis.addEventListener("unload", () => {
  for (const r of receivers) r[Symbol.asyncDispose]();
});

Deno.bench({
  name: "STOQ: 64 MiB upload, one stream",
  group: "throughput",
  n: 10,
  warmup: 1,
  async fn(b) {
    await stoqUpload(receivers[0], payload, b);
  },
});

Deno.bench({
  name: "Deno QUIC: 64 MiB upload, one stream",
  group: "throughput",
  baseline: true,
  n: 10,
  warmup: 1,
  async fn(b) {
    await denoUpload(receivers[1], payload, b);
  },
});
