/**
 * Option interfaces for endpoints, listeners and connections, and their encoding for the shim.
 *
 * @module
 */

import { SETTINGS_FIELDS, UNSET } from "../../ffi/mod.ts";
import { StoqError } from "../errors.ts";

/** Congestion controllers msquic offers. */
export type CongestionControl = "cubic" | "bbr";

/** Transport settings shared by clients and servers. */
export interface StoqTransportOptions {
  /**
   * Milliseconds of silence after which the connection is closed with `IDLE_TIMEOUT`.
   *
   * 0 means no idle timeout: the connection stays open while the peer answers, and keep-alives
   * (every `keepAliveInterval`, 5000 ms unless set) make a dead or unreachable peer surface as
   * `IDLE_TIMEOUT` within `keepAliveInterval + disconnectTimeout`.
   * @default {30000}
   */
  maxIdleTimeout?: number;
  /**
   * Milliseconds the handshake may take before failing with `HANDSHAKE_TIMEOUT`.
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * Milliseconds between keep-alive packets; 0 turns keep-alive off.
   * @default {0 (5000 when maxIdleTimeout is 0)}
   */
  keepAliveInterval?: number;
  /**
   * Milliseconds that sent packets may go unacknowledged before the peer is declared
   * unreachable and the connection closes with `IDLE_TIMEOUT`.
   * @default {16000}
   */
  disconnectTimeout?: number;
  /**
   * Milliseconds this side may wait before acknowledging what it received (QUIC's
   * `max_ack_delay`, 1 to 16383). The peer's loss recovery waits for
   * it, so on fast paths (round trips well under a millisecond) a long delay makes a transfer
   * that lost a packet crawl at about a congestion window per delay: msquic's 25 ms turned a
   * 5 MB send on `::1` from 50 ms into 850 ms. Raise it on slow links to send fewer
   * acknowledgements.
   * @default {5}
   */
  maxAckDelay?: number;
  /**
   * Bidirectional streams the peer may have open at once.
   * @default {100}
   */
  maxConcurrentBidirectionalStreams?: number;
  /**
   * Unidirectional streams the peer may have open at once.
   * @default {100}
   */
  maxConcurrentUnidirectionalStreams?: number;
  /**
   * Congestion control algorithm.
   * @default {"cubic"}
   */
  congestionControl?: CongestionControl;
  /**
   * Whether datagrams may be received (and so are offered to the peer).
   * @default {true}
   */
  datagrams?: boolean;
  /**
   * Initial per-stream receive window in bytes (msquic grows it as the reader keeps up).
   * @default {1048576}
   */
  streamReceiveWindow?: number;
  /**
   * Connection-wide receive window in bytes.
   * @default {16777216}
   */
  connectionReceiveWindow?: number;
  /**
   * Let msquic copy send data into its own buffers. Off by default: STOQ's buffers are held
   * until acknowledged instead, which saves a copy.
   * @default {false}
   */
  sendBuffering?: boolean;
  /**
   * Pace sends over the round trip instead of sending each congestion window in a burst.
   * @default {true}
   */
  pacing?: boolean;
  /**
   * Received datagrams kept for `readDatagram()` per connection. When the queue is full the
   * oldest is dropped (counted in `stats().datagramsDropped`), so a peer can never make the
   * receiver hold more than this many datagrams (each at most one packet).
   * @default {256}
   */
  datagramReceiveQueue?: number;
}

/**
 * `maxAckDelay` unless set: msquic's 25 ms paces loss recovery on sub-millisecond paths
 * (README, "Defaults, chosen by measurement").
 */
const DEFAULT_MAX_ACK_DELAY_MS = 5n;

/** Milliseconds between keep-alives when `maxIdleTimeout` is 0 and none is set. */
const KEEPALIVE_WITHOUT_IDLE_TIMEOUT = 5000n;

/**
 * Checks that `options` is an options object (not `undefined`, `null` or a primitive).
 *
 * @throws {StoqError} `INVALID_ARGUMENT`.
 */
export function checkOptions(options: unknown, what: string): void {
  if (
    typeof options !== "object" || options === null || Array.isArray(options)
  ) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot ${what} as the options must be an object: current value is ${
        options === null ? "null" : typeof options
      }`,
    );
  }
}

function checkInt(
  options: Record<string, unknown>,
  key: string,
  min: number,
  max: number,
): bigint {
  const value = options[key];
  if (value === undefined) return UNSET;
  if (
    typeof value !== "number" || !Number.isInteger(value) || value < min ||
    value > max
  ) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot configure the transport as '${key}' must be an integer from ${min} to ${max}: current value is ${
        String(value)
      }`,
    );
  }
  return BigInt(value);
}

/** Server-side settings the listener adds to the transport options. */
export interface ServerSettings {
  /** 0 = none, 1 = session resumption, 2 = resumption and 0-RTT. */
  resumption: 0 | 1 | 2;
}

/** Encodes transport options as a `stoq_settings` struct. Throws before anything is opened. */
export function encodeSettings(
  options: StoqTransportOptions,
  server?: ServerSettings,
): Uint8Array<ArrayBuffer> {
  const o = options as Record<string, unknown>;
  const values: Record<(typeof SETTINGS_FIELDS)[number], bigint> = {
    idleTimeoutMs: checkInt(o, "maxIdleTimeout", 0, 2 ** 31),
    handshakeIdleTimeoutMs: checkInt(o, "handshakeTimeout", 1, 2 ** 31),
    keepAliveMs: checkInt(o, "keepAliveInterval", 0, 2 ** 31),
    peerBidiStreams: checkInt(o, "maxConcurrentBidirectionalStreams", 0, 65535),
    peerUnidiStreams: checkInt(
      o,
      "maxConcurrentUnidirectionalStreams",
      0,
      65535,
    ),
    streamRecvWindow: checkInt(o, "streamReceiveWindow", 1024, 2 ** 31),
    connFlowWindow: checkInt(o, "connectionReceiveWindow", 1024, 2 ** 31),
    congestionControl: UNSET,
    datagrams: 1n,
    sendBuffering: 0n,
    pacing: UNSET,
    disconnectTimeoutMs: checkInt(o, "disconnectTimeout", 1, 600_000),
    serverResumption: BigInt(server?.resumption ?? 0),
    datagramQueue: checkInt(o, "datagramReceiveQueue", 1, 65536),
    maxAckDelayMs: checkInt(o, "maxAckDelay", 1, 16383),
  };
  // No idle timeout: only keep-alives can then tell that the peer is gone.
  if (values.idleTimeoutMs === 0n) {
    if (values.keepAliveMs === 0n) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        "Cannot configure the transport with both 'maxIdleTimeout' and 'keepAliveInterval' 0: nothing would ever notice a dead peer. Leave keepAliveInterval unset (5000 ms) or give a maxIdleTimeout",
      );
    }
    if (values.keepAliveMs === UNSET) {
      values.keepAliveMs = KEEPALIVE_WITHOUT_IDLE_TIMEOUT;
    }
  }
  if (values.peerBidiStreams === UNSET) values.peerBidiStreams = 100n;
  // msquic starts streams at 64 KiB; a wider first window saves round trips on fast paths.
  if (values.streamRecvWindow === UNSET) {
    values.streamRecvWindow = 1024n * 1024n;
  }
  if (values.peerUnidiStreams === UNSET) values.peerUnidiStreams = 100n;
  if (values.maxAckDelayMs === UNSET) {
    values.maxAckDelayMs = DEFAULT_MAX_ACK_DELAY_MS;
  }
  const cc = options.congestionControl;
  if (cc !== undefined) {
    if (cc !== "cubic" && cc !== "bbr") {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot configure the transport as 'congestionControl' must be "cubic" or "bbr": current value is ${
          String(cc)
        }`,
      );
    }
    values.congestionControl = cc === "bbr" ? 1n : 0n;
  }
  for (const key of ["datagrams", "sendBuffering", "pacing"] as const) {
    if (options[key] !== undefined && typeof options[key] !== "boolean") {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot configure the transport as '${key}' must be a boolean: current value is ${
          String(options[key])
        }`,
      );
    }
  }
  if (options.datagrams === false) values.datagrams = 0n;
  if (options.sendBuffering === true) values.sendBuffering = 1n;
  if (options.pacing !== undefined) values.pacing = options.pacing ? 1n : 0n;
  const out = new BigUint64Array(SETTINGS_FIELDS.length);
  SETTINGS_FIELDS.forEach((field, i) => out[i] = values[field]);
  return new Uint8Array(out.buffer);
}

/** Encodes ALPN names as length-prefixed bytes. */
export function encodeAlpn(alpnProtocols: unknown): Uint8Array<ArrayBuffer> {
  if (
    !Array.isArray(alpnProtocols) || alpnProtocols.length === 0 ||
    alpnProtocols.length > 8
  ) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot configure ALPN as 'alpnProtocols' must be an array of 1 to 8 names: current value is ${
        JSON.stringify(alpnProtocols)
      }`,
    );
  }
  const parts: number[] = [];
  for (const name of alpnProtocols) {
    const bytes = typeof name === "string"
      ? new TextEncoder().encode(name)
      : undefined;
    if (!bytes || bytes.length === 0 || bytes.length > 255) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot configure ALPN as every name in 'alpnProtocols' must be 1 to 255 bytes: current value is ${
          JSON.stringify(name)
        }`,
      );
    }
    parts.push(bytes.length, ...bytes);
  }
  return new Uint8Array(parts);
}

/** A NUL-terminated C string. */
export function cstr(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${text}\0`);
}
