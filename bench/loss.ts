/**
 * `deno task bench:loss`: goodput through a lossy path. STOQ with Cubic, STOQ with BBR and
 * Deno's built-in QUIC (default congestion control, and its "low-latency" BBR for reference)
 * each upload the same payload through the same relay (`testing/lossy_relay.c`): 20 ms each
 * way (40 ms RTT) and 1 % or 5 % of datagrams dropped in both directions (data and ACKs).
 * The receivers run in their own processes and hash every byte (SHA-256), which the sender
 * checks. Rounds alternate the transports so that machine noise hits all alike; medians are
 * reported.
 *
 * Before that, one unimpaired STOQ upload through the relay measures what the relay itself can
 * forward on this machine, so that the lossy figures can be read against it.
 *
 * Last line: `loss 1% STOQ-BBR/Deno ratio: <number>`.
 *
 * Env: STOQ_LOSS_MIB (payload per upload at 1 % and at 5 %, default "16,4"),
 * STOQ_LOSS_ROUNDS (default 3).
 *
 * @module
 */

import { LossyRelay, type RelayStats } from "../testing/lossy_relay.ts";
import {
  denoUpload,
  makePayload,
  type Payload,
  type Receiver,
  startReceiver,
  stoqUpload,
} from "./_throughput.ts";

const [mib1, mib5] = (Deno.env.get("STOQ_LOSS_MIB") ?? "16,4").split(",").map(
  Number,
);
const rounds = Number(Deno.env.get("STOQ_LOSS_ROUNDS") ?? 3);
const DELAY_MS = 20;

type Contender = "STOQ-Cubic" | "STOQ-BBR" | "Deno" | "Deno-BBR";
const CONTENDERS: Contender[] = ["STOQ-Cubic", "STOQ-BBR", "Deno", "Deno-BBR"];

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

function mbps(bytes: number, seconds: number): number {
  return (bytes * 8) / seconds / 1e6;
}

await using stoqReceiver = await startReceiver("stoq");
await using denoReceiver = await startReceiver("deno");
await using stoqRelay = await LossyRelay.start({
  targetPort: stoqReceiver.port,
});
await using denoRelay = await LossyRelay.start({
  targetPort: denoReceiver.port,
});
const viaStoqRelay: Receiver = { ...stoqReceiver, port: stoqRelay.port };
const viaDenoRelay: Receiver = { ...denoReceiver, port: denoRelay.port };

function upload(who: Contender, payload: Payload): Promise<number> {
  switch (who) {
    case "STOQ-Cubic":
      return stoqUpload(viaStoqRelay, payload, undefined, {
        congestionControl: "cubic",
      });
    case "STOQ-BBR":
      return stoqUpload(viaStoqRelay, payload, undefined, {
        congestionControl: "bbr",
      });
    case "Deno":
      return denoUpload(viaDenoRelay, payload);
    case "Deno-BBR":
      return denoUpload(viaDenoRelay, payload, undefined, {
        congestionControl: "low-latency",
      });
  }
}

// The relay's own ceiling: an unimpaired STOQ upload through it (and warm-up for both).
const warm = makePayload(4 * 1024 * 1024);
await upload("STOQ-Cubic", warm);
await upload("Deno", warm);
const big = makePayload(256 * 1024 * 1024);
const ceiling = mbps(big.size, await upload("STOQ-Cubic", big));
console.log(
  `relay ceiling: ${
    ceiling.toFixed(0)
  } Mbit/s (one unimpaired 256 MiB STOQ upload through the relay)`,
);

function lossSummary(before: RelayStats, after: RelayStats): string {
  const received = after.up.received - before.up.received +
    after.down.received - before.down.received;
  const lost = after.up.lost - before.up.lost + after.down.lost -
    before.down.lost;
  const socket = after.socketDrops - before.socketDrops;
  return `${
    (100 * lost / received).toFixed(2)
  } % of ${received} datagrams dropped by the relay, ` +
    `${socket} by its full socket buffers`;
}

const results = new Map<number, Record<Contender, number>>();
let fastest = 0;
for (const [loss, mib] of [[0.01, mib1], [0.05, mib5]]) {
  const payload = makePayload(mib * 1024 * 1024);
  for (const relay of [stoqRelay, denoRelay]) {
    await relay.impair({ loss, delayMs: DELAY_MS });
  }
  const before = [await stoqRelay.stats(), await denoRelay.stats()];
  const samples = Object.fromEntries(
    CONTENDERS.map((c) => [c, [] as number[]]),
  ) as Record<Contender, number[]>;
  console.log(
    `loss ${loss * 100}%, ${
      2 * DELAY_MS
    } ms RTT, ${mib} MiB per upload, ${rounds} rounds`,
  );
  for (let r = 0; r < rounds; r++) {
    // Rotate the order each round.
    const order = CONTENDERS.map((_, i) =>
      CONTENDERS[(i + r) % CONTENDERS.length]
    );
    const line: string[] = [];
    for (const who of order) {
      const rate = mbps(payload.size, await upload(who, payload));
      samples[who].push(rate);
      fastest = Math.max(fastest, rate);
      line.push(`${who} ${rate.toFixed(1)}`);
    }
    console.log(`  round ${r + 1}: ${line.join(", ")} Mbit/s`);
  }
  const after = [await stoqRelay.stats(), await denoRelay.stats()];
  console.log(`  STOQ relay: ${lossSummary(before[0], after[0])}`);
  console.log(`  Deno relay: ${lossSummary(before[1], after[1])}`);
  const medians = Object.fromEntries(
    CONTENDERS.map((c) => [c, median(samples[c])]),
  ) as Record<Contender, number>;
  results.set(loss, medians);
}

console.log(
  `fastest lossy upload: ${fastest.toFixed(0)} Mbit/s = ${
    (100 * fastest / ceiling).toFixed(0)
  } % of the relay ceiling`,
);
for (const [loss, m] of results) {
  console.log(
    `loss ${loss * 100}% medians (Mbit/s): ` +
      CONTENDERS.map((c) => `${c} ${m[c].toFixed(1)}`).join(", ") +
      `; STOQ-BBR/Deno-BBR ${(m["STOQ-BBR"] / m["Deno-BBR"]).toFixed(2)}`,
  );
}
for (const [loss, m] of [...results].reverse()) {
  console.log(
    `loss ${loss * 100}% STOQ-BBR/Deno ratio: ${
      (m["STOQ-BBR"] / m["Deno"]).toFixed(2)
    }`,
  );
}
