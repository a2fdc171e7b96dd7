/**
 * Streams data between two Phoenix apps for a while and shows send and receive Gbit/s live, with
 * a progress bar (redrawn in place on a terminal, one line per update otherwise).
 *
 *   deno run -A --unstable-net examples/throughput_test.ts [seconds, default 10] [--high-performance]
 *
 * @module
 */

import { Phoenix } from "../mod.ts";

const seconds = Number(Deno.args.find((a) => !a.startsWith("--")) ?? 10);
const highPerformance = Deno.args.includes("--high-performance");

await using receiver = await Phoenix.create("throughput-receiver", {
  highPerformance,
});
await using sender = await Phoenix.create("throughput-sender", {
  highPerformance,
  listen: false,
});

// The receiver reads whatever arrives.
(async () => {
  for await (const s of receiver.streams) {
    (async () => {
      for await (const _ of s.readable) { /* counted by stats */ }
    })().catch(() => {});
  }
})();

const tty = Deno.stdout.isTerminal();
const encoder = new TextEncoder();
const started = performance.now();
function draw(final = false): void {
  const elapsed = (performance.now() - started) / 1000;
  const done = Math.min(1, elapsed / seconds);
  const width = 30;
  const bar = "#".repeat(Math.round(done * width)).padEnd(width, "-");
  const out = sender.stats();
  const inn = receiver.stats();
  const line = `[${bar}] ${(done * 100).toFixed(0).padStart(3)}%  send ${
    out.sendGbps.toFixed(2)
  } Gbit/s  receive ${inn.receiveGbps.toFixed(2)} Gbit/s`;
  Deno.stdout.writeSync(
    encoder.encode(tty && !final ? `\r${line}` : `${tty ? "\r" : ""}${line}\n`),
  );
}
const timer = setInterval(draw, 250);

const block = crypto.getRandomValues(new Uint8Array(64 * 1024));
const conn = await sender.connect(`[::1]:${receiver.addr.port}`);
await conn.streamData(() =>
  performance.now() - started < seconds * 1000 ? block : null
);
clearInterval(timer);
draw(true);
const s = sender.stats();
const r = receiver.stats();
console.log(
  `Sent ${(s.bytes.sent / 2 ** 20).toFixed(0)} MiB at ${
    s.average.sendGbps.toFixed(2)
  } Gbit/s on average; ` +
    `received ${(r.bytes.received / 2 ** 20).toFixed(0)} MiB`,
);
