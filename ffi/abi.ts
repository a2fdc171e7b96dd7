/**
 * Record layouts and constants shared with `native/stoq.h`. Change both together and bump
 * {@linkcode ABI_VERSION}.
 *
 * @module
 */

/** Must equal `STOQ_ABI_VERSION` in the loaded shim. */
export const ABI_VERSION = 5;

/** Bytes per completion record and per submission record. */
export const RECORD_SIZE = 64;

/** Completion record types (`enum stoq_event_type`). */
export const Ev = {
  CONN_CONNECTED: 1,
  CONN_SHUTDOWN_TRANSPORT: 2,
  CONN_SHUTDOWN_PEER: 3,
  CONN_SHUTDOWN_COMPLETE: 4,
  CONN_PEER_STREAM: 5,
  CONN_DGRAM_STATE: 6,
  CONN_DGRAM_READY: 7,
  CONN_PEER_CERT: 8,
  CONN_STREAMS_AVAILABLE: 9,
  LISTENER_NEW_CONN: 10,
  LISTENER_STOPPED: 11,
  CONN_PEER_REJECTED: 12,
  CONN_TICKET: 13,
  CONN_RESUMED: 14,
  STREAM_START_COMPLETE: 20,
  STREAM_RECV: 21,
  STREAM_SEND_COMPLETE: 22,
  STREAM_PEER_SEND_SHUTDOWN: 23,
  STREAM_PEER_SEND_ABORTED: 24,
  STREAM_PEER_RECV_ABORTED: 25,
  STREAM_SEND_SHUTDOWN_COMPLETE: 26,
  STREAM_SHUTDOWN_COMPLETE: 27,
  STREAM_IDEAL_SEND_BUFFER: 28,
  STREAM_PEER_ACCEPTED: 29,
  FILE_PROGRESS: 30,
  FILE_DONE: 31,
} as const;

/** Submission record types (`enum stoq_op_type`). */
export const Op = {
  STREAM_SEND: 1,
  STREAM_RECV_COMPLETE: 2,
  STREAM_SHUTDOWN: 3,
  CONN_SHUTDOWN: 4,
  DGRAM_SEND: 5,
  CONN_START: 6,
  STREAM_SEND_FILE: 7,
  STREAM_RECV_FILE: 8,
  STREAM_FILE_WRITE: 9,
  STREAM_SEND_COPY: 10,
} as const;

/** The send pool's geometry (`STOQ_SLOT_SIZE`, `STOQ_SLAB_SLOTS`, `STOQ_MAX_SLABS`). */
export const Pool = {
  SLOT_SIZE: 65536,
  SLAB_SLOTS: 64,
  MAX_SLABS: 256,
} as const;

/** Flags of `stoq_rt_open` (`enum stoq_rt_flags`). */
export const RtFlags = { NO_GSO: 1 } as const;

/** Flags of `stoq_conn_connect` (`enum stoq_connect_flags`). */
export const ConnectFlags = { DEFER_START: 1, SHARE_BINDING: 2 } as const;

/** msquic's QUIC_STREAM_SHUTDOWN_FLAGS. */
export const StreamShutdown = {
  GRACEFUL: 1,
  ABORT_SEND: 2,
  ABORT_RECEIVE: 4,
  ABORT: 6,
  IMMEDIATE: 8,
} as const;

/** Credential flags (`enum stoq_cred_flags`). */
export const Cred = {
  CLIENT: 1,
  /** The shim verifies the peer's chain (and a client the server name) against the trust store. */
  VERIFY_CHAIN: 2,
  /** Then JS decides (a `CONN_PEER_CERT` record, `stoq_conn_cert_complete`). */
  DEFER: 4,
  REQUIRE_CLIENT_AUTH: 8,
} as const;

/** Flags of a `STREAM_SEND` operation (`enum stoq_send_flags`). */
export const SendFlags = { FIN: 1, ZERO_RTT: 2 } as const;

/** Flags of `stoq_stream_open` (`enum stoq_open_flags`). */
export const OpenFlags = { UNIDIRECTIONAL: 1, FAIL_BLOCKED: 2 } as const;

/** Kinds of `stoq_close_batch` items (`enum stoq_close_kind`). */
export const CloseKind = { STREAM: 1, CONNECTION: 2 } as const;

/** Why the shim refused a peer certificate (`enum stoq_reject`). */
export const Reject = { CHAIN: 1, NAME: 2, MALFORMED: 3, MISSING: 4 } as const;

/** Indices of `stoq_rt_counts` (`enum stoq_count`). */
export const Count = {
  CONFIGS: 0,
  LISTENERS: 1,
  CONNECTIONS: 2,
  STREAMS: 3,
  SEND_BUFFERS: 4,
  DGRAM_BUFFERS: 5,
  RECV_BUFFERS: 6,
  SENDS_ALLOCATED: 7,
  SENDS_FREED: 8,
  WAKEUPS: 9,
  EVENTS: 10,
  POOL_SLABS: 11,
  FILE_TRANSFERS: 12,
  DGRAM_QUEUED: 13,
  MAX: 14,
} as const;

/** Indices of `stoq_conn_stats` (`enum stoq_stat`). */
export const Stat = {
  RTT_US: 0,
  MIN_RTT_US: 1,
  CWND: 2,
  SEND_BYTES: 3,
  RECV_BYTES: 4,
  SEND_STREAM_BYTES: 5,
  RECV_STREAM_BYTES: 6,
  SEND_PACKETS: 7,
  RECV_PACKETS: 8,
  LOST_PACKETS: 9,
  HANDSHAKE_US: 10,
  PATH_MTU: 11,
  DGRAM_DROPPED: 12,
  MAX: 13,
} as const;

/** `stoq_settings`: fifteen u64 fields, in this order. */
export const SETTINGS_FIELDS = [
  "idleTimeoutMs",
  "handshakeIdleTimeoutMs",
  "keepAliveMs",
  "peerBidiStreams",
  "peerUnidiStreams",
  "streamRecvWindow",
  "connFlowWindow",
  "congestionControl",
  "datagrams",
  "sendBuffering",
  "pacing",
  "disconnectTimeoutMs",
  "serverResumption",
  "datagramQueue",
  "maxAckDelayMs",
] as const;

/** Marks a settings field as "keep msquic's default". */
export const UNSET = 0xffff_ffff_ffff_ffffn;

/** msquic status codes on Linux (negated errno values are not used: msquic returns errno). */
export const Status = {
  SUCCESS: 0,
  PENDING: -2,
  INVALID_PARAMETER: 22,
  INVALID_STATE: 1,
  NOT_FOUND: 2,
  OUT_OF_MEMORY: 12,
  HANDSHAKE_FAILURE: 103,
  ABORTED: 125,
  ADDRESS_IN_USE: 98,
  INVALID_ADDRESS: 97,
  CONNECTION_TIMEOUT: 110,
  CONNECTION_IDLE: 62,
  INTERNAL_ERROR: 5,
  CONNECTION_REFUSED: 111,
  PROTOCOL_ERROR: 71,
  UNREACHABLE: 113,
  TLS_ERROR: 126,
  USER_CANCELED: 130,
  ALPN_NEG_FAILURE: 92,
  STREAM_LIMIT_REACHED: 86,
  /** QUIC_STATUS_TLS_ALERT(42): the shim or JS refused the peer's certificate. */
  BAD_CERTIFICATE: 0xBEBC300 + 42,
  /** QUIC_STATUS_TLS_ALERT(x) = TLS_BASE + x */
  TLS_BASE: 0xBEBC300,
  /** QUIC_STATUS_CERT_ERROR(x) = CERT_BASE + x */
  CERT_BASE: 0xBEBC400,
} as const;

/**
 * A view over one batch of 64-byte records. Fields are read as two u32 halves so that no
 * BigInt is made on the hot path; every value the shim puts there fits in 2^53.
 */
export class Records {
  readonly buffer: Uint8Array<ArrayBuffer>;
  readonly #u32: Uint32Array;
  readonly #i32: Int32Array;
  readonly #view: DataView;

  constructor(capacity: number) {
    this.buffer = new Uint8Array(capacity * RECORD_SIZE);
    this.#u32 = new Uint32Array(this.buffer.buffer);
    this.#i32 = new Int32Array(this.buffer.buffer);
    this.#view = new DataView(this.buffer.buffer);
  }

  /** Record type (events) or opcode (operations). */
  type(i: number): number {
    return this.#u32[i * 16];
  }
  /** Signed status. */
  status(i: number): number {
    return this.#i32[i * 16 + 1];
  }
  /** u64 field `k` (0 = id/handle, 1..6 = a..f) as a number. */
  field(i: number, k: number): number {
    const base = i * 16 + 2 + k * 2;
    return this.#u32[base] + this.#u32[base + 1] * 0x1_0000_0000;
  }
  /** u64 field `k` as a bigint, for values that may exceed 2^53 (application codes). */
  big(i: number, k: number): bigint {
    const base = i * 16 + 2 + k * 2;
    return BigInt(this.#u32[base]) | (BigInt(this.#u32[base + 1]) << 32n);
  }
  /** Writes one operation record. */
  setOp(
    i: number,
    op: number,
    handle: bigint,
    a: bigint,
    b: bigint,
    c = 0n,
  ): void {
    const view = this.#view, o = i * RECORD_SIZE;
    view.setUint32(o, op, true);
    view.setInt32(o + 4, 0, true);
    view.setBigUint64(o + 8, handle, true);
    view.setBigUint64(o + 16, a, true);
    view.setBigUint64(o + 24, b, true);
    view.setBigUint64(o + 32, c, true);
    view.setBigUint64(o + 40, 0n, true);
  }

  /**
   * Writes one operation record whose fields are all below 2^53, as numbers (no BigInt made):
   * the hot path's sends and receive completions.
   */
  setOpNumbers(
    i: number,
    op: number,
    handle: number,
    a: number,
    b: number,
    c: number,
    d: number,
  ): void {
    const u = this.#u32, base = i * 16;
    u[base] = op;
    u[base + 1] = 0;
    u[base + 2] = handle >>> 0;
    u[base + 3] = (handle / 0x1_0000_0000) >>> 0;
    u[base + 4] = a >>> 0;
    u[base + 5] = (a / 0x1_0000_0000) >>> 0;
    u[base + 6] = b >>> 0;
    u[base + 7] = (b / 0x1_0000_0000) >>> 0;
    u[base + 8] = c >>> 0;
    u[base + 9] = (c / 0x1_0000_0000) >>> 0;
    u[base + 10] = d >>> 0;
    u[base + 11] = (d / 0x1_0000_0000) >>> 0;
  }
}
