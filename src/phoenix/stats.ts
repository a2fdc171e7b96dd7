/**
 * Phoenix's monitoring: throughput over a sliding window and since start, counts, connection
 * figures, handshake latencies — as a snapshot ({@linkcode PhoenixStats}) and as Prometheus text.
 *
 * @module
 */

import { Counter, Gauge, Registry } from "npm:prom-client@15.1.3";

/**
 * Latency figures of one kind of connect.
 *
 * @example Reading handshake latencies
 * ```ts
 * import type { HandshakeFigures } from "../../mod.ts";
 * const show = (h: HandshakeFigures) => `${h.count} at p50 ${h.p50Ms} ms`;
 * console.log(show({ count: 3, p50Ms: 0.8, p99Ms: 1.2 })); // 3 at p50 0.8 ms
 * ```
 */
export interface HandshakeFigures {
  /** How many. */
  count: number;
  /** Median latency in milliseconds (of the last 1,024). */
  p50Ms: number;
  /** 99th percentile latency in milliseconds (of the last 1,024). */
  p99Ms: number;
}

/**
 * A snapshot of a Phoenix app's traffic. Bytes count application payload.
 *
 * @example Printing throughput
 * ```ts
 * import type { PhoenixStats } from "../../mod.ts";
 * const line = (s: PhoenixStats) => `${s.sendGbps.toFixed(2)} Gbit/s out, ${s.receiveGbps.toFixed(2)} in`;
 * console.log(typeof line);
 * ```
 */
export interface PhoenixStats {
  /** Gbit/s sent over the last `windowMs`. */
  sendGbps: number;
  /** Gbit/s received over the last `windowMs`. */
  receiveGbps: number;
  /** The sliding window, in milliseconds. */
  windowMs: number;
  /** Gbit/s since the app started. */
  average: { sendGbps: number; receiveGbps: number };
  /** Payload bytes. */
  bytes: { sent: number; received: number };
  /** Whole messages (`sendData`, multiplexed transfers). */
  messages: { sent: number; received: number };
  /** Streams (`streamData`), and Phoenix streams open now in either direction. */
  streams: { sent: number; received: number; open: number };
  /**
   * Connections: all open ones (`open`), those in the pool of outgoing connections (`pooled`),
   * pooled ones with no stream in use (`idle`), and those peers opened to this app (`incoming`).
   */
  connections: { open: number; pooled: number; idle: number; incoming: number };
  /** Mean smoothed round-trip time over open connections, in milliseconds (0 with none). */
  rttMs: number;
  /** Packets lost, on connections open now and closed before. */
  packetsLost: number;
  /**
   * Connects by what they cost: a full TLS handshake (`cold`), a resumed session (`resumed`),
   * or none at all because the pool had a live connection (`pooled`).
   */
  handshakes: {
    cold: HandshakeFigures;
    resumed: HandshakeFigures;
    pooled: HandshakeFigures;
  };
  /** Milliseconds since the app started. */
  uptimeMs: number;
}

const BUCKET_MS = 100;

/** Bytes per 100 ms bucket over the last minute. */
class RateWindow {
  readonly #buckets = new Float64Array(600);
  #current = 0;
  #start = Math.floor(performance.now() / BUCKET_MS);

  add(bytes: number): void {
    this.#advance();
    this.#buckets[this.#current % this.#buckets.length] += bytes;
  }

  /** Bytes per second over the last `ms`. */
  rate(ms: number): number {
    this.#advance();
    const n = Math.max(
      1,
      Math.min(this.#buckets.length - 1, Math.round(ms / BUCKET_MS)),
    );
    let sum = 0;
    // The current bucket is still filling: the window is the n buckets before it plus it,
    // weighted by how much of it has elapsed.
    const now = performance.now() / BUCKET_MS;
    const partial = now - Math.floor(now);
    for (let i = 1; i <= n; i++) {
      sum += this
        .#buckets[
          (this.#current - i + this.#buckets.length) % this.#buckets.length
        ] *
        (i === n ? 1 - partial : 1);
    }
    sum += this.#buckets[this.#current % this.#buckets.length];
    return sum / (ms / 1000);
  }

  #advance(): void {
    const bucket = Math.floor(performance.now() / BUCKET_MS) - this.#start;
    while (this.#current < bucket) {
      this.#current++;
      this.#buckets[this.#current % this.#buckets.length] = 0;
    }
  }
}

/** The last 1,024 latencies of one kind. */
class Latencies {
  readonly #samples: number[] = [];
  #next = 0;
  count = 0;

  add(ms: number): void {
    this.count++;
    if (this.#samples.length < 1024) this.#samples.push(ms);
    else this.#samples[this.#next++ % 1024] = ms;
  }

  figures(): HandshakeFigures {
    const sorted = [...this.#samples].sort((a, b) => a - b);
    const at = (q: number) =>
      sorted.length
        ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]
        : 0;
    return { count: this.count, p50Ms: at(0.5), p99Ms: at(0.99) };
  }
}

/** What the meter needs from the app at snapshot time. */
export interface LiveFigures {
  connections: { open: number; pooled: number; idle: number; incoming: number };
  rttMs: number;
  packetsLost: number;
}

/** Counts what a Phoenix app sends and receives. */
export class PhoenixMeter {
  readonly #started = performance.now();
  readonly #sent = new RateWindow();
  readonly #received = new RateWindow();
  readonly #handshakes = {
    cold: new Latencies(),
    resumed: new Latencies(),
    pooled: new Latencies(),
  };
  readonly windowMs: number;
  bytesSent = 0;
  bytesReceived = 0;
  messagesSent = 0;
  messagesReceived = 0;
  streamsSent = 0;
  streamsReceived = 0;
  streamsOpen = 0;

  constructor(windowMs: number) {
    this.windowMs = windowMs;
  }

  /** Payload bytes sent. */
  sent(bytes: number): void {
    this.bytesSent += bytes;
    this.#sent.add(bytes);
  }

  /** Payload bytes received. */
  received(bytes: number): void {
    this.bytesReceived += bytes;
    this.#received.add(bytes);
  }

  /** One connect and what it cost. */
  connected(kind: "cold" | "resumed" | "pooled", ms: number): void {
    this.#handshakes[kind].add(ms);
  }

  /** A snapshot, completed with the app's live figures. */
  snapshot(live: LiveFigures): PhoenixStats {
    const up = (performance.now() - this.#started) / 1000;
    const gbps = (bytesPerSecond: number) => bytesPerSecond * 8 / 1e9;
    return {
      sendGbps: gbps(this.#sent.rate(this.windowMs)),
      receiveGbps: gbps(this.#received.rate(this.windowMs)),
      windowMs: this.windowMs,
      average: {
        sendGbps: up > 0 ? gbps(this.bytesSent / up) : 0,
        receiveGbps: up > 0 ? gbps(this.bytesReceived / up) : 0,
      },
      bytes: { sent: this.bytesSent, received: this.bytesReceived },
      messages: { sent: this.messagesSent, received: this.messagesReceived },
      streams: {
        sent: this.streamsSent,
        received: this.streamsReceived,
        open: this.streamsOpen,
      },
      connections: live.connections,
      rttMs: live.rttMs,
      packetsLost: live.packetsLost,
      handshakes: {
        cold: this.#handshakes.cold.figures(),
        resumed: this.#handshakes.resumed.figures(),
        pooled: this.#handshakes.pooled.figures(),
      },
      uptimeMs: up * 1000,
    };
  }
}

/**
 * A Prometheus registry whose metrics read a fresh snapshot each time they are collected.
 * Counters carry `_total`; throughput and connection gauges the current values.
 */
export function phoenixRegistry(
  app: string,
  snapshot: () => PhoenixStats,
): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ app });
  let current: PhoenixStats | undefined;
  // One snapshot per scrape: the first metric collected takes it, the others reuse it.
  const take = () => current ??= snapshot();
  const done = () => {
    queueMicrotask(() => current = undefined);
  };
  const gauge = (
    name: string,
    help: string,
    read: (s: PhoenixStats) => number,
  ) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(take()));
        done();
      },
    });
  const counter = (
    name: string,
    help: string,
    labelNames: string[],
    read: (s: PhoenixStats) => Record<string, number>,
  ) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [label, value] of Object.entries(read(take()))) {
          this.inc({ [labelNames[0]]: label }, value);
        }
        done();
      },
    });
  gauge(
    "phoenix_send_gbps",
    "Gbit/s sent over the sliding window",
    (s) => s.sendGbps,
  );
  gauge(
    "phoenix_receive_gbps",
    "Gbit/s received over the sliding window",
    (s) => s.receiveGbps,
  );
  counter("phoenix_bytes_total", "Payload bytes", ["direction"], (s) => ({
    sent: s.bytes.sent,
    received: s.bytes.received,
  }));
  counter("phoenix_messages_total", "Whole messages", ["direction"], (s) => ({
    sent: s.messages.sent,
    received: s.messages.received,
  }));
  counter("phoenix_streams_total", "Streams", ["direction"], (s) => ({
    sent: s.streams.sent,
    received: s.streams.received,
  }));
  gauge(
    "phoenix_streams_open",
    "Phoenix streams open now",
    (s) => s.streams.open,
  );
  const connections = new Gauge({
    name: "phoenix_connections",
    help: "Connections by state",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      const c = take().connections;
      for (const state of ["open", "pooled", "idle", "incoming"] as const) {
        this.set({ state }, c[state]);
      }
      done();
    },
  });
  void connections;
  gauge(
    "phoenix_rtt_milliseconds",
    "Mean smoothed RTT over open connections",
    (s) => s.rttMs,
  );
  const lost = new Counter({
    name: "phoenix_packets_lost_total",
    help: "Packets lost, on open and closed connections",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(take().packetsLost);
      done();
    },
  });
  void lost;
  counter(
    "phoenix_connects_total",
    "Connects by what they cost",
    ["kind"],
    (s) => ({
      cold: s.handshakes.cold.count,
      resumed: s.handshakes.resumed.count,
      pooled: s.handshakes.pooled.count,
    }),
  );
  const latency = new Gauge({
    name: "phoenix_connect_latency_milliseconds",
    help: "Connect latency of the last 1,024 connects of a kind",
    labelNames: ["kind", "quantile"],
    registers: [registry],
    collect() {
      const h = take().handshakes;
      for (const kind of ["cold", "resumed", "pooled"] as const) {
        this.set({ kind, quantile: "0.5" }, h[kind].p50Ms);
        this.set({ kind, quantile: "0.99" }, h[kind].p99Ms);
      }
      done();
    },
  });
  void latency;
  return registry;
}
