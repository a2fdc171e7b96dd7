/**
 * `deno bench`: one connection, one stream, 64 MiB upload, every byte SHA-256-verified by the
 * receiver; STOQ against Deno's built-in QUIC (the baseline). Connection setup is not timed.
 *
 * @module
 */

import { denoUpload, makePayload, stoqUpload } from "./_throughput.ts";

const payload = makePayload(64 * 1024 * 1024);

Deno.bench({
  name: "STOQ: 64 MiB upload, one stream",
  group: "throughput",
  n: 10,
  warmup: 1,
  async fn(b) {
    await stoqUpload(payload, b);
  },
});

Deno.bench({
  name: "Deno QUIC: 64 MiB upload, one stream",
  group: "throughput",
  baseline: true,
  n: 10,
  warmup: 1,
  async fn(b) {
    await denoUpload(payload, b);
  },
});
