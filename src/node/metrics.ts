/**
 * The node's metrics: counters kept as plain numbers on the hot path, exposed as a Prometheus
 * registry (prom-client) read at scrape time, and a once-a-second history for the dashboard.
 *
 * @module
 */

import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
} from "npm:prom-client@15.1.3";

/** One second of history. */
export interface Sample {
  /** Unix time, seconds. */
  t: number;
  /** Payload bytes per second received by the services. */
  receivedBps: number;
  /** Payload bytes per second sent by the services. */
  sentBps: number;
  /** Connections open. */
  connections: number;
  /** Handshakes per second. */
  handshakesPerSecond: number;
}

/** The dashboard's series, one array per field, oldest first. */
export interface Series {
  t: number[];
  receivedBps: number[];
  sentBps: number[];
  connections: number[];
  handshakesPerSecond: number[];
}

/** Live figures read at scrape time. */
export interface NodeGauges {
  /** Connections open now. */
  connections(): number;
  /** Streams the services are serving now. */
  streams(): number;
  /** Entries in the CA's transparency log. */
  logEntries(): number;
  /** notAfter of the node's certificate and of the CA root, Unix seconds. */
  certificateExpiry(): { node: number; root: number };
}

const HISTORY = 600;
const HANDSHAKE_BUCKETS = [
  0.0005,
  0.001,
  0.002,
  0.005,
  0.01,
  0.02,
  0.05,
  0.1,
  0.2,
  0.5,
  1,
  2,
  5,
];

/** What the node counts. */
export class NodeMetrics {
  /** The Prometheus registry (`/metrics`). */
  readonly registry: Registry = new Registry();
  /** Payload bytes received by the services. */
  bytesReceived = 0;
  /** Payload bytes sent by the services. */
  bytesSent = 0;
  /** Handshakes completed. */
  handshakes = 0;
  readonly #connections: Counter;
  readonly #refused: Counter;
  readonly #streams: Counter;
  readonly #errors: Counter;
  readonly #reloads: Counter;
  readonly #handshakeSeconds: Histogram;
  readonly #history: Sample[] = [];
  #last = { t: performance.now(), received: 0, sent: 0, handshakes: 0 };
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #gauges: NodeGauges;

  /**
   * Creates the registry.
   *
   * @param gauges Live figures.
   * @param labels `ca` (the CA's name) and `version`, on `stoq_node_info`.
   */
  constructor(gauges: NodeGauges, labels: { ca: string; version: string }) {
    this.#gauges = gauges;
    const r = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "stoq_node_info",
      help: "The node's CA and STOQ version (always 1)",
      labelNames: ["ca", "version"],
      registers: r,
    }).set(labels, 1);
    this.#connections = new Counter({
      name: "stoq_node_connections_total",
      help: "Connections accepted (handshake completed), by service (ALPN)",
      labelNames: ["service"],
      registers: r,
    });
    this.#refused = new Counter({
      name: "stoq_node_connections_refused_total",
      help: "Connections refused after their handshake, by reason",
      labelNames: ["reason"],
      registers: r,
    });
    new Gauge({
      name: "stoq_node_connections_open",
      help: "Connections open now",
      registers: r,
      collect() {
        this.set(gauges.connections());
      },
    });
    this.#streams = new Counter({
      name: "stoq_node_streams_total",
      help: "Streams served, by service",
      labelNames: ["service"],
      registers: r,
    });
    new Gauge({
      name: "stoq_node_streams_open",
      help: "Streams being served now",
      registers: r,
      collect() {
        this.set(gauges.streams());
      },
    });
    // The collectors' `this` is their metric: these read the node's figures.
    const bytes = () => ({
      received: this.bytesReceived,
      sent: this.bytesSent,
    });
    const latest = () => this.#history.at(-1);
    const handshakes = () => this.handshakes;
    new Counter({
      name: "stoq_node_bytes_total",
      help: "Payload bytes the services received and sent",
      labelNames: ["direction"],
      registers: r,
      collect() {
        this.reset();
        const b = bytes();
        this.inc({ direction: "received" }, b.received);
        this.inc({ direction: "sent" }, b.sent);
      },
    });
    new Gauge({
      name: "stoq_node_throughput_bytes_per_second",
      help: "Payload bytes per second over the last second",
      labelNames: ["direction"],
      registers: r,
      collect() {
        const s = latest();
        this.set({ direction: "received" }, s?.receivedBps ?? 0);
        this.set({ direction: "sent" }, s?.sentBps ?? 0);
      },
    });
    new Counter({
      name: "stoq_node_handshakes_total",
      help: "TLS handshakes completed",
      registers: r,
      collect() {
        this.reset();
        this.inc(handshakes());
      },
    });
    this.#handshakeSeconds = new Histogram({
      name: "stoq_node_handshake_duration_seconds",
      help: "Handshake duration as msquic measured it",
      buckets: HANDSHAKE_BUCKETS,
      registers: r,
    });
    this.#errors = new Counter({
      name: "stoq_node_errors_total",
      help:
        "Errors by StoqError code (connections, streams, reloads, renewals)",
      labelNames: ["code"],
      registers: r,
    });
    this.#reloads = new Counter({
      name: "stoq_node_config_reloads_total",
      help: "Configuration reloads, by result",
      labelNames: ["result"],
      registers: r,
    });
    new Gauge({
      name: "stoq_node_certificate_expiry_timestamp_seconds",
      help: "When a certificate expires (Unix time)",
      labelNames: ["certificate"],
      registers: r,
      collect() {
        const e = gauges.certificateExpiry();
        this.set({ certificate: "node" }, e.node);
        this.set({ certificate: "root" }, e.root);
      },
    });
    new Gauge({
      name: "stoq_node_trustchain_log_entries",
      help: "Entries in the CA's transparency log",
      registers: r,
      collect() {
        this.set(gauges.logEntries());
      },
    });
  }

  /** A connection completed its handshake in `handshakeMs` and goes to `service`. */
  accepted(service: string, handshakeMs: number): void {
    this.handshakes++;
    this.#connections.inc({ service });
    this.#handshakeSeconds.observe(handshakeMs / 1000);
  }

  /** A connection was refused. */
  refused(reason: string): void {
    this.#refused.inc({ reason });
  }

  /** A stream started. */
  stream(service: string): void {
    this.#streams.inc({ service });
  }

  /** An error with a StoqError code (or `UNKNOWN`). */
  error(code: string): void {
    this.#errors.inc({ code });
  }

  /** A reload finished. */
  reloaded(ok: boolean): void {
    this.#reloads.inc({ result: ok ? "ok" : "error" });
  }

  /** Starts taking one sample a second. */
  start(): void {
    this.#last = {
      t: performance.now(),
      received: this.bytesReceived,
      sent: this.bytesSent,
      handshakes: this.handshakes,
    };
    const timer = setInterval(() => this.sample(), 1000);
    Deno.unrefTimer(timer as unknown as number);
    this.#timer = timer;
  }

  /** Takes a sample now (the timer calls it each second). */
  sample(): Sample {
    const now = performance.now();
    const dt = Math.max(1e-3, (now - this.#last.t) / 1000);
    const s: Sample = {
      t: Date.now() / 1000,
      receivedBps: (this.bytesReceived - this.#last.received) / dt,
      sentBps: (this.bytesSent - this.#last.sent) / dt,
      connections: this.#gauges.connections(),
      handshakesPerSecond: (this.handshakes - this.#last.handshakes) / dt,
    };
    this.#last = {
      t: now,
      received: this.bytesReceived,
      sent: this.bytesSent,
      handshakes: this.handshakes,
    };
    this.#history.push(s);
    if (this.#history.length > HISTORY) this.#history.shift();
    return s;
  }

  /** The last ten minutes, one sample a second. */
  series(): Series {
    const h = this.#history;
    return {
      t: h.map((s) => s.t),
      receivedBps: h.map((s) => s.receivedBps),
      sentBps: h.map((s) => s.sentBps),
      connections: h.map((s) => s.connections),
      handshakesPerSecond: h.map((s) => s.handshakesPerSecond),
    };
  }

  /** Stops sampling. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
