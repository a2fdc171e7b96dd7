/**
 * Sends a file from one Phoenix app to another and checks it arrived intact (SHA-256 on both
 * sides). The bytes stream from disk to the network and back to disk, never whole in memory.
 *
 *   deno run -A --unstable-net examples/file_transfer.ts <file> [destination]
 *
 * @module
 */

import { createHash } from "node:crypto";
import { Phoenix } from "../mod.ts";

const [source, destination = `${source}.received`] = Deno.args;
if (!source) {
  console.error("usage: file_transfer.ts <file> [destination]");
  Deno.exit(2);
}

await using receiver = await Phoenix.create("file-receiver");
await using sender = await Phoenix.create("file-sender", { listen: false });

// The receiver writes the first stream that arrives to `destination`, hashing as it goes.
const received = (async () => {
  for await (const stream of receiver.streams) {
    const hash = createHash("sha256");
    const file = await Deno.open(destination, {
      write: true,
      create: true,
      truncate: true,
    });
    await stream.readable
      .pipeThrough(
        new TransformStream({
          transform(chunk, c) {
            hash.update(chunk);
            c.enqueue(chunk);
          },
        }),
      )
      .pipeTo(file.writable);
    return { from: stream.from, sha256: hash.digest("hex") };
  }
})();

const sent = createHash("sha256");
const file = await Deno.open(source);
const conn = await sender.connect(`[::1]:${receiver.addr.port}`);
const t0 = performance.now();
await conn.streamData(file.readable.pipeThrough(
  new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, c) {
      sent.update(chunk);
      c.enqueue(chunk);
    },
  }),
));
const got = await received;
const seconds = (performance.now() - t0) / 1000;
const size = (await Deno.stat(source)).size;
const sentHash = sent.digest("hex");
console.log(`sent ${source} (${size} bytes) as ${sentHash}`);
console.log(`received from ${got!.from} into ${destination} as ${got!.sha256}`);
if (got!.sha256 !== sentHash) {
  console.error("MISMATCH: the file did not arrive intact");
  Deno.exit(1);
}
console.log(
  `verified in ${seconds.toFixed(2)} s (${
    ((size * 8) / seconds / 1e9).toFixed(2)
  } Gbit/s)`,
);
