/**
 * The STOQ node's configuration schema: one JSON Schema per TOML section. It validates the file
 * (through Phoenix's loader), fills in the defaults, tells a reload which changes apply live,
 * and renders the README's configuration reference ({@linkcode configReference}).
 *
 * @module
 */

import {
  type ConfigSchema,
  LISTEN_ADDR_ALLOWED,
  NETWORK_SECTION,
} from "../../phoenix/config.ts";
import { TRUSTCHAIN_ALPN } from "../../trustchain/mod.ts";

/** The ALPN of the echo service: bidirectional streams and datagrams are sent back. */
export const ECHO_ALPN = "stoq-echo";
/** The ALPN of the sink service: data is read and dropped; a bidirectional stream gets its byte count. */
export const SINK_ALPN = "stoq-sink";
/** Every service a node offers, by ALPN. */
export const NODE_SERVICES: readonly string[] = [
  ECHO_ALPN,
  SINK_ALPN,
  TRUSTCHAIN_ALPN,
];

const net = NETWORK_SECTION.properties!;

/** `[network]` as the node reads it: Phoenix's section, with how each key reloads. */
const NETWORK: ConfigSchema = {
  ...NETWORK_SECTION,
  properties: {
    listen_addr: { ...net.listen_addr, reload: "restart" },
    max_connections: {
      ...net.max_connections,
      description:
        "Connections open at most; a connection beyond it is closed right after its handshake with close code 0x10 (BUSY) and counted as refused.",
      reload: "live",
    },
    quic_config: { ...net.quic_config, reload: "restart" },
    congestion_control: {
      ...net.congestion_control,
      defaultText: '`"bbr"` with high_performance, else `"cubic"`',
      reload: "live",
    },
    idle_timeout_ms: { ...net.idle_timeout_ms, reload: "live" },
    stream_receive_window: {
      ...net.stream_receive_window,
      default: undefined,
      defaultText: "`8388608` with high_performance, else `1048576`",
      reload: "live",
    },
    connection_receive_window: {
      ...net.connection_receive_window,
      default: undefined,
      defaultText: "`67108864` with high_performance, else `16777216`",
      reload: "live",
    },
    max_bidirectional_streams: {
      ...net.max_bidirectional_streams,
      reload: "live",
    },
    max_unidirectional_streams: {
      ...net.max_unidirectional_streams,
      reload: "live",
    },
    datagrams: { ...net.datagrams, reload: "live" },
    alpn: {
      type: "array",
      description:
        "The services offered, by ALPN: stoq-echo (echo), stoq-sink (sink), trustchain/1 (the CA).",
      items: { enum: [...NODE_SERVICES] },
      minItems: 1,
      default: [...NODE_SERVICES],
      reload: "restart",
    },
  },
};

/** `[trustchain]`: the node's own CA. */
const TRUSTCHAIN: ConfigSchema = {
  type: "object",
  description:
    "The node's certificate authority: created on first start, kept in its store, issuing the node's own certificate and, through the trustchain/1 service, certificates for apps.",
  additionalProperties: false,
  properties: {
    name: {
      type: "string",
      description:
        "The CA's name: its root certificate's CN and its federation member name.",
      pattern: "^[A-Za-z0-9._-]{1,64}$",
      allowed: "1 to 64 of A-Z a-z 0-9 . _ -",
      default: "stoq-node",
      reload: "restart",
    },
    domain: {
      type: "string",
      description:
        "The domain names are issued under (an app `my-app` gets `my-app.<domain>`); the node's certificate names `node.<domain>`, `trustchain.<domain>` and `localhost`.",
      pattern:
        "^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$",
      allowed: "a lowercase DNS name with at least two labels",
      default: "stoq.local",
      reload: "restart",
    },
    store: {
      type: "string",
      description:
        "Where the CA lives: `sqlite:path`, a bare path, `postgres://…` (several nodes sharing one CA) or `memory:` (lost at exit).",
      minLength: 1,
      defaultText: "`sqlite:<data_dir>/ca.db`",
      reload: "restart",
    },
    key_file: {
      type: "string",
      description:
        "A file of at least 32 random bytes that wraps the CA's private keys at rest (given when the CA is created, needed at every start).",
      minLength: 1,
      reload: "restart",
    },
    server_names: {
      type: "array",
      description:
        "More DNS names for the node's own certificate (the CA is allowed to issue them).",
      items: { type: "string" },
      default: [],
      reload: "restart",
    },
    certificate_lifetime_ms: {
      type: "integer",
      description:
        "Lifetime of the node's own certificate; a change renews it at once (new connections get the new one, live ones keep theirs).",
      minimum: 60_000,
      maximum: 604_800_000,
      default: 86_400_000,
      reload: "live",
    },
    rotation: {
      type: "boolean",
      description:
        "Renew the node's certificate automatically before it expires.",
      default: true,
      reload: "live",
    },
    renew_at: {
      type: "number",
      description:
        "Fraction of the certificate's lifetime after which it is renewed.",
      minimum: 0.05,
      maximum: 0.95,
      default: 0.6667,
      reload: "live",
    },
    federation_bundle: {
      type: "string",
      description:
        "A signed trust bundle (JSON, `SignedTrustBundle`) the service hands out, re-read on reload; it must list this CA. Without it, a bundle of this CA alone, endorsed by it (written to `<data_dir>/bundle.json`).",
      minLength: 1,
      reload: "live",
    },
    enrollment_tokens_file: {
      type: "string",
      description:
        "A file with one token per line: an issuance request through the service must carry one of them. Re-read on reload.",
      minLength: 1,
      reload: "live",
    },
    open_enrollment: {
      type: "boolean",
      description:
        "Issue to anyone who reaches the service, token or not (a lab network only). Without tokens or this, the service issues nothing.",
      default: false,
      reload: "live",
    },
  },
};

/** `[metrics]`: the HTTP side. */
const METRICS: ConfigSchema = {
  type: "object",
  description:
    "The HTTP server for monitoring: `/metrics` (Prometheus text), `/` (the live dashboard), `/healthz`, `/root.pem`, and the CA's transparency log as C2SP static-ct-api under `/ct/`.",
  additionalProperties: false,
  properties: {
    enabled: {
      type: "boolean",
      description: "Run the HTTP server.",
      default: true,
      reload: "restart",
    },
    listen_addr: {
      type: "string",
      description: 'IPv6 address and TCP port, as "[address]:port".',
      format: "listen-addr",
      allowed: LISTEN_ADDR_ALLOWED,
      default: "[::1]:9464",
      reload: "restart",
    },
  },
};

/** `[log]`: what the node writes to standard output. */
const LOG: ConfigSchema = {
  type: "object",
  description:
    "Logs on standard output: one line per event, with level, time, event and connection id.",
  additionalProperties: false,
  properties: {
    level: {
      description: "The least severe level written.",
      enum: ["debug", "info", "warn", "error"],
      default: "info",
      reload: "live",
    },
    format: {
      description:
        '"json": one JSON object per line. "text": the same fields as `key=value`.',
      enum: ["json", "text"],
      default: "json",
      reload: "live",
    },
  },
};

/** `[node]`: the process. */
const NODE: ConfigSchema = {
  type: "object",
  description: "The node process.",
  additionalProperties: false,
  properties: {
    data_dir: {
      type: "string",
      description:
        "Where the node keeps its CA (by default), `root.pem`, `bundle.json` and `member.json`; created on first start.",
      minLength: 1,
      defaultText:
        "`$STOQ_HOME/node`, else `$XDG_DATA_HOME/stoq/node`, else `~/.local/share/stoq/node`",
      reload: "restart",
    },
    shutdown_deadline_ms: {
      type: "integer",
      description:
        "On SIGINT or SIGTERM, how long open streams may take to finish before the remaining connections are closed (close code 0x11, SHUTDOWN).",
      minimum: 0,
      maximum: 3_600_000,
      default: 30_000,
      reload: "live",
    },
  },
};

/** The node's sections, in the order the reference lists them. */
export const NODE_SECTIONS: Record<string, ConfigSchema> = {
  network: NETWORK,
  trustchain: TRUSTCHAIN,
  metrics: METRICS,
  log: LOG,
  node: NODE,
};

/** The node's configuration with the defaults filled in (TOML names). */
export interface NodeConfig {
  /** `[network]`. */
  network: {
    listen_addr: string;
    max_connections: number;
    quic_config: "high_performance" | "low_latency";
    congestion_control?: "cubic" | "bbr";
    idle_timeout_ms: number;
    stream_receive_window?: number;
    connection_receive_window?: number;
    max_bidirectional_streams: number;
    max_unidirectional_streams: number;
    datagrams: boolean;
    alpn: string[];
  };
  /** `[trustchain]`. */
  trustchain: {
    name: string;
    domain: string;
    store?: string;
    key_file?: string;
    server_names: string[];
    certificate_lifetime_ms: number;
    rotation: boolean;
    renew_at: number;
    federation_bundle?: string;
    enrollment_tokens_file?: string;
    open_enrollment: boolean;
  };
  /** `[metrics]`. */
  metrics: { enabled: boolean; listen_addr: string };
  /** `[log]`. */
  log: {
    level: "debug" | "info" | "warn" | "error";
    format: "json" | "text";
  };
  /** `[node]`. */
  node: { data_dir?: string; shutdown_deadline_ms: number };
}
