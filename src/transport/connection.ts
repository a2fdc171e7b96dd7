/**
 * A QUIC connection: streams, datagrams, stats and lifecycle promises.
 *
 * @module
 */

import {
  CloseKind,
  Ev,
  Events,
  Op,
  OpenFlags,
  type Records,
  Reject,
  Stat,
} from "../../ffi/mod.ts";
import { StoqError } from "../errors.ts";
import { formatIPv6 } from "./address.ts";
import type { Runtime } from "./runtime.ts";
import { nextTask } from "./tick.ts";
import { connectionError, statusError } from "./status.ts";
import {
  checkFile,
  fileError,
  type StoqBidirectionalStream,
  type StoqFileOptions,
  type StoqFileResult,
  type StoqReceiveStream,
  type StoqSendStream,
  StreamCore,
} from "./stream.ts";

/**
 * Options for {@linkcode StoqConnection.createBidirectionalStream} and
 * {@linkcode StoqConnection.createUnidirectionalStream}, shaped like Deno's
 * `QuicSendStreamOptions`.
 *
 * @example Failing fast instead of waiting for stream credit
 * ```ts
 * import type { StoqStreamOptions } from "../../mod.ts";
 * const options: StoqStreamOptions = { waitUntilAvailable: false };
 * console.log(options.waitUntilAvailable); // false
 * ```
 */
export interface StoqStreamOptions {
  /**
   * Wait until the peer's stream limit lets this stream open. When false, a stream beyond
   * the limit fails at once with `STREAM_LIMIT`. (Deno's default is false; STOQ waits, so that
   * a burst of streams queues instead of failing.)
   * @default {true}
   */
  waitUntilAvailable?: boolean;
  /**
   * Gives up waiting for stream credit: the promise rejects with `ABORTED`. The stream given
   * up keeps its place in line (QUIC numbers streams in order): when credit comes it opens
   * already reset, and the peer frees its credit once it takes it from its incoming streams.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * How a connection ended, shaped like `Deno.QuicCloseInfo`.
 *
 * @example Closing with a code
 * ```ts
 * import type { StoqCloseInfo } from "../../mod.ts";
 * const info: StoqCloseInfo = { closeCode: 0, reason: "done" };
 * console.log(info.closeCode);
 * ```
 */
export interface StoqCloseInfo {
  /** The application close code (0 when closed without one). */
  closeCode: number;
  /** The reason given locally (QUIC does not deliver the peer's reason through msquic). */
  reason: string;
}

/**
 * A snapshot of connection statistics from msquic.
 *
 * @example Reading stats
 * ```ts
 * import type { StoqConnectionStats } from "../../mod.ts";
 * const report = (s: StoqConnectionStats) => `${s.rttMs} ms, ${s.packetsLost} lost`;
 * console.log(typeof report);
 * ```
 */
export interface StoqConnectionStats {
  /** Smoothed round-trip time in milliseconds. */
  rttMs: number;
  /** Minimum round-trip time seen, in milliseconds. */
  minRttMs: number;
  /** Congestion window in bytes. */
  congestionWindow: number;
  /** UDP payload bytes sent. */
  bytesSent: number;
  /** UDP payload bytes received. */
  bytesReceived: number;
  /** Stream payload bytes sent. */
  streamBytesSent: number;
  /** Stream payload bytes received. */
  streamBytesReceived: number;
  /** QUIC packets sent. */
  packetsSent: number;
  /** QUIC packets received. */
  packetsReceived: number;
  /** Packets declared lost (suspected minus spurious). */
  packetsLost: number;
  /** Handshake duration in milliseconds. */
  handshakeMs: number;
  /** Current path MTU in bytes. */
  pathMtu: number;
  /**
   * Datagrams received but dropped because the receive queue was full
   * (`datagramReceiveQueue` unread datagrams; the oldest goes first).
   */
  datagramsDropped: number;
}

/**
 * A peer's address.
 *
 * @example An address
 * ```ts
 * import type { StoqAddr } from "../../mod.ts";
 * const addr: StoqAddr = { hostname: "::1", port: 8443, transport: "quic" };
 * console.log(`[${addr.hostname}]:${addr.port}`);
 * ```
 */
export interface StoqAddr {
  /** IPv6 literal. */
  hostname: string;
  /** UDP port. */
  port: number;
  /** Always "quic". */
  transport: "quic";
}

/**
 * The peer's certificate, handed over when validation is deferred to JS.
 *
 * @example Inspecting the peer certificate
 * ```ts
 * import type { PeerCertificate } from "../../mod.ts";
 * const show = (peer: PeerCertificate) => console.log(peer.leaf.byteLength, peer.chain.byteLength);
 * show({ leaf: new Uint8Array(1), chain: new Uint8Array(0) });
 * ```
 */
export interface PeerCertificate {
  /** The leaf certificate, DER. */
  leaf: Uint8Array;
  /** The chain the peer sent, as a PKCS#7 (DER) bundle. */
  chain: Uint8Array;
}

/**
 * Decides whether to accept a peer certificate.
 *
 * @example Accepting only one pinned leaf
 * ```ts
 * import type { PeerVerifier } from "../../mod.ts";
 * const pinned = new Uint8Array([1, 2, 3]);
 * const verifyPeer: PeerVerifier = ({ leaf }) => leaf.length === pinned.length && leaf.every((b, i) => b === pinned[i]);
 * console.log(verifyPeer({ leaf: pinned, chain: new Uint8Array(0) })); // true
 * ```
 */
export type PeerVerifier = (
  peer: PeerCertificate,
) => boolean | Promise<boolean>;

/** Hooks from the endpoint that owns a connection. */
export interface ConnectionHooks {
  /** Called when the connection completes its handshake. */
  onConnected?(conn: StoqConnection): void;
  /** Called once the native connection is closed and freed. */
  onClosed?(conn: StoqConnection): void;
  /** Deferred validation of the peer certificate (after the shim's own checks, if any). */
  verifyPeer?: PeerVerifier;
  /** The connection was started with a session ticket and may send 0-RTT data. */
  zeroRtt?: boolean;
  /** A TLS session ticket arrived from the server (clients). */
  onTicket?(ticket: Uint8Array<ArrayBuffer>): void;
  /** The server's certificate as verified when the ticket being resumed was issued (clients). */
  resumedPeer?: PeerCertificate;
  /** A peer certificate passed `verifyPeer` (servers remember it for resumed sessions). */
  onPeerVerified?(peer: PeerCertificate): void;
  /** A client resumed a session whose certificate had this SHA-256 (servers). */
  onResumed?(peerHash: string): PeerCertificate | undefined;
}

const REJECTIONS: Record<number, string> = {
  [Reject.CHAIN]:
    "The peer's certificate chain is not trusted: pass the issuing CA in caCerts",
  [Reject.NAME]:
    "The peer's certificate does not carry the name connected to: connect with the name it carries (serverName) or fix its subjectAltName",
  [Reject.MALFORMED]: "The peer's certificate could not be parsed",
  [Reject.MISSING]:
    "The client sent no certificate, and this listener requires one",
};

const TLS_ALERT_BAD_CERTIFICATE = 42;
// Datagrams are taken from the shim's queue through this buffer (no datagram is larger).
const datagramScratch = new Uint8Array(65536);
// QUIC_CONNECTION_SHUTDOWN_FLAG_SILENT: no CONNECTION_CLOSE is sent, nothing is waited for.
const SHUTDOWN_SILENT = 1n;
// errno the shim's file open returns for a path that is not a regular file (nor a directory).
const EINVAL = 22;
const internal = Symbol("stoq.internal");

/**
 * A QUIC connection, shaped like `Deno.QuicConn`.
 *
 * @example Echo one stream
 * ```ts ignore
 * import { StoqEndpoint } from "../../mod.ts";
 * await using endpoint = new StoqEndpoint();
 * const conn = await endpoint.connect({ hostname: "::1", port: 8443, alpnProtocols: ["stoq-echo"], caCerts: [ca] });
 * const { readable, writable } = await conn.createBidirectionalStream();
 * ```
 */
export class StoqConnection implements AsyncDisposable {
  /** @internal */
  readonly runtime: Runtime;
  readonly #ptr: Deno.PointerObject;
  readonly #id: number;
  readonly #hooks: ConnectionHooks;
  readonly #streams = new Set<StreamCore>();
  readonly #handshake = Promise.withResolvers<void>();
  readonly #closed = Promise.withResolvers<StoqCloseInfo>();
  readonly #finished = Promise.withResolvers<void>();
  // The incoming streams are made on first use (most connections never read one of them).
  #bidiStream: ReadableStream<StoqBidirectionalStream> | undefined;
  #uniStream: ReadableStream<StoqReceiveStream> | undefined;
  #bidi: ReadableStreamDefaultController<StoqBidirectionalStream> | undefined;
  #uni: ReadableStreamDefaultController<StoqReceiveStream> | undefined;
  // Peer streams not accepted yet (they keep their credit: see StreamCore.accept), and
  // whether a read of the incoming ReadableStream waits for one.
  #bidiBacklog: StreamCore[] = [];
  #uniBacklog: StreamCore[] = [];
  #bidiWanted = false;
  #uniWanted = false;
  #datagramWaiters: PromiseWithResolvers<Uint8Array<ArrayBuffer>>[] = [];
  #datagramSendEnabled = false;
  #maxDatagramSize = 0;
  #connected = false;
  #resumed = false;
  #startPending = false;
  #native = true;
  #error: StoqError | undefined;
  #closeInfo: StoqCloseInfo | undefined;
  #protocol: string | undefined;
  #remote: StoqAddr | undefined;
  #peerCertificate: PeerCertificate | undefined;

  /** @internal Made by {@linkcode StoqEndpoint}; not for users. */
  constructor(
    token: typeof internal,
    runtime: Runtime,
    ptr: Deno.PointerObject,
    id: number,
    hooks: ConnectionHooks,
  ) {
    if (token !== internal) {
      throw new TypeError(
        "Cannot construct a StoqConnection: use StoqEndpoint.connect()",
      );
    }
    this.runtime = runtime;
    this.#ptr = ptr;
    this.#id = id;
    this.#hooks = hooks;
    // Both are observed by the endpoint; a user who never awaits them must not crash the process.
    this.#handshake.promise.catch(() => {});
    this.#closed.promise.catch(() => {});
    runtime.register(id, (ev, i) => this.#onEvent(ev, i));
    if (hooks.zeroRtt) {
      // Started by the first stream operation's batch, or in the next task at the latest.
      this.#startPending = true;
      nextTask(() => this.requestStart());
    }
  }

  /** Streams the peer opened. */
  get incomingBidirectionalStreams(): ReadableStream<StoqBidirectionalStream> {
    // highWaterMark 0: a peer stream is handed out (accepted) only for a pending read.
    return this.#bidiStream ??= new ReadableStream({
      start: (c) => {
        this.#bidi = c;
        if (!this.#native) this.#endIncoming(c);
      },
      pull: () => {
        this.#bidiWanted = true;
        this.#offerStream(false);
      },
    }, { highWaterMark: 0 });
  }

  /** Unidirectional streams the peer opened. */
  get incomingUnidirectionalStreams(): ReadableStream<StoqReceiveStream> {
    return this.#uniStream ??= new ReadableStream({
      start: (c) => {
        this.#uni = c;
        if (!this.#native) this.#endIncoming(c);
      },
      pull: () => {
        this.#uniWanted = true;
        this.#offerStream(true);
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Starts a 0-RTT connection whose native start was deferred, after every operation queued in
   * this turn (so that stream data written right after `connect()` goes out as early data).
   */
  requestStart(): void {
    if (!this.#startPending) return;
    this.#startPending = false;
    this.runtime.submitLast(Op.CONN_START, this.#ptr);
  }

  /** @internal */
  static create(
    runtime: Runtime,
    ptr: Deno.PointerObject,
    id: number,
    hooks: ConnectionHooks,
  ): StoqConnection {
    return new StoqConnection(internal, runtime, ptr, id, hooks);
  }

  /** Resolves when the TLS handshake completes; rejects with the reason it failed. */
  get handshake(): Promise<void> {
    return this.#handshake.promise;
  }

  /** Resolves with the close info when the connection ends by an application close; rejects
   * with a {@linkcode StoqError} when the transport ended it (idle timeout, peer vanished…). */
  get closed(): Promise<StoqCloseInfo> {
    return this.#closed.promise;
  }

  /** Resolves once the native connection and all its streams are closed and freed. */
  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /** Whether the handshake resumed an earlier TLS session (after the handshake). */
  get resumed(): boolean {
    return this.#resumed;
  }

  /**
   * Whether this client connection was handed out before its handshake to send 0-RTT early
   * data (see `zeroRtt` in the connect options). Await {@linkcode handshake} for the server's
   * confirmation; early data the server refused is sent again after it.
   */
  get earlyData(): boolean {
    return this.#hooks.zeroRtt === true;
  }

  /** The negotiated ALPN protocol, after the handshake. */
  get protocol(): string | undefined {
    return this.#protocol;
  }

  /** The peer's address. */
  get remoteAddr(): StoqAddr {
    if (!this.#remote && this.#native) {
      const addr = new Uint8Array(16);
      const port = new Uint32Array(1);
      const st = this.runtime.lib.stoq_conn_address(
        this.#ptr,
        1,
        addr,
        new Uint8Array(port.buffer),
      );
      if (st === 0) {
        this.#remote = {
          hostname: formatIPv6(addr),
          port: port[0],
          transport: "quic",
        };
      }
    }
    return this.#remote ?? { hostname: "::", port: 0, transport: "quic" };
  }

  /** The local address; undefined before a deferred 0-RTT start and once closed. */
  get localAddr(): StoqAddr | undefined {
    if (!this.#native) return undefined;
    const addr = new Uint8Array(16);
    const port = new Uint32Array(1);
    const st = this.runtime.lib.stoq_conn_address(
      this.#ptr,
      0,
      addr,
      new Uint8Array(port.buffer),
    );
    if (st !== 0 || port[0] === 0) return undefined;
    return { hostname: formatIPv6(addr), port: port[0], transport: "quic" };
  }

  /**
   * The certificate the peer presented, when validation was deferred to a `verifyPeer`
   * callback (the same object the callback received); `undefined` otherwise.
   */
  get peerCertificate(): PeerCertificate | undefined {
    return this.#peerCertificate;
  }

  /** The largest datagram the peer accepts now (0 when datagrams are off). */
  get maxDatagramSize(): number {
    return this.#datagramSendEnabled ? this.#maxDatagramSize : 0;
  }

  /** @internal The error that ended the connection. */
  failure(): StoqError {
    if (this.#error) return this.#error;
    if (this.#closeInfo) {
      return new StoqError(
        "CONNECTION_CLOSED",
        `The connection was closed locally with code ${this.#closeInfo.closeCode}`,
        { appCode: BigInt(this.#closeInfo.closeCode) },
      );
    }
    return new StoqError("CLOSED", "The connection is closed");
  }

  #checkOpen(what: string): void {
    if (!this.#native || this.#error || this.#closeInfo) {
      const err = this.failure();
      throw new StoqError(err.code, `Cannot ${what}: ${err.message}`, {
        cause: err,
      });
    }
  }

  async #openStream(
    unidirectional: boolean,
    options: StoqStreamOptions | undefined,
  ): Promise<StreamCore> {
    if (options !== undefined) {
      if (typeof options !== "object" || options === null) {
        throw new StoqError(
          "INVALID_ARGUMENT",
          `Cannot open a stream as the options must be an object: current value is ${
            options === null ? "null" : typeof options
          }`,
        );
      }
      const wait = options.waitUntilAvailable;
      if (wait !== undefined && typeof wait !== "boolean") {
        throw new StoqError(
          "INVALID_ARGUMENT",
          `Cannot open a stream as 'waitUntilAvailable' must be a boolean: current value is ${
            String(wait)
          }`,
        );
      }
      if (
        options.signal !== undefined && !(options.signal instanceof AbortSignal)
      ) {
        throw new StoqError(
          "INVALID_ARGUMENT",
          `Cannot open a stream as 'signal' must be an AbortSignal: current value is ${typeof options
            .signal}`,
        );
      }
    }
    const signal = options?.signal;
    if (signal?.aborted) {
      throw new StoqError(
        "ABORTED",
        "Gave up opening a stream: the signal was aborted",
        { cause: signal.reason },
      );
    }
    this.#checkOpen("open a stream");
    let flags = unidirectional ? OpenFlags.UNIDIRECTIONAL : 0;
    if (options?.waitUntilAvailable === false) flags |= OpenFlags.FAIL_BLOCKED;
    const status = new Int32Array(1);
    const lib = this.runtime.lib;
    const ptr = lib.stoq_stream_open(this.#ptr, flags, status);
    if (ptr === null) throw statusError(status[0], "open a stream");
    const core = new StreamCore(this, ptr, Number(lib.stoq_stream_id(ptr)), {
      send: true,
      receive: !unidirectional,
      local: true,
      zeroRtt: this.#hooks.zeroRtt === true,
    });
    this.#streams.add(core);
    // During a 0-RTT handshake the stream is handed out at once, so that what is written now
    // joins the first flight (msquic holds it until the stream may send); otherwise the stream
    // waits for the peer's credit first.
    if (!(this.#hooks.zeroRtt && !this.#connected)) await core.started(signal);
    return core;
  }

  /**
   * Opens a bidirectional stream. By default it waits for stream credit from the peer (its
   * limit on concurrent streams); see {@linkcode StoqStreamOptions}.
   *
   * @throws {StoqError} `STREAM_LIMIT` when not waiting and the peer's limit is reached,
   *   `ABORTED` when the signal fires first, the connection's error once it has closed.
   */
  async createBidirectionalStream(
    options?: StoqStreamOptions,
  ): Promise<StoqBidirectionalStream> {
    const core = await this.#openStream(false, options);
    return { readable: core.readable!, writable: core.writable! };
  }

  /**
   * Opens a unidirectional stream, waiting for stream credit like
   * {@linkcode createBidirectionalStream}.
   *
   * @throws {StoqError} As {@linkcode createBidirectionalStream}.
   */
  async createUnidirectionalStream(
    options?: StoqStreamOptions,
  ): Promise<StoqSendStream> {
    const core = await this.#openStream(true, options);
    return core.writable!;
  }

  /**
   * Sends one unreliable datagram.
   *
   * @throws {StoqError} `DATAGRAM_TOO_LARGE` above {@linkcode maxDatagramSize},
   *   `DATAGRAM_DISABLED` when the peer does not accept datagrams.
   */
  sendDatagram(data: Uint8Array): Promise<void> {
    if (!(data instanceof Uint8Array)) {
      return Promise.reject(
        new StoqError(
          "INVALID_ARGUMENT",
          `Cannot send the datagram as 'data' must be a Uint8Array: current value is ${typeof data}`,
        ),
      );
    }
    try {
      this.#checkOpen("send a datagram");
    } catch (err) {
      return Promise.reject(err);
    }
    if (!this.#datagramSendEnabled) {
      return Promise.reject(
        new StoqError(
          "DATAGRAM_DISABLED",
          "Cannot send a datagram: the peer did not enable datagrams (set datagrams: true on both sides)",
        ),
      );
    }
    if (data.byteLength > this.#maxDatagramSize) {
      return Promise.reject(
        new StoqError(
          "DATAGRAM_TOO_LARGE",
          `Cannot send a datagram of ${data.byteLength} bytes: the limit on this path is ${this.#maxDatagramSize}; use a stream for larger payloads`,
        ),
      );
    }
    const done = Promise.withResolvers<void>();
    this.runtime.submitBytes(
      Op.DGRAM_SEND,
      this.#ptr,
      data,
      0,
      (status) => {
        if (status === 0) done.resolve();
        else done.reject(statusError(status, "send the datagram"));
      },
    );
    return done.promise;
  }

  /**
   * Receives the next datagram. Unread datagrams wait in a queue of `datagramReceiveQueue`
   * (see the transport options); when it is full the oldest is dropped and counted in
   * `stats().datagramsDropped`. Rejects when the connection ends (datagrams still unread then
   * are dropped with it).
   */
  readDatagram(): Promise<Uint8Array<ArrayBuffer>> {
    const next = this.#takeDatagram();
    if (next) return Promise.resolve(next);
    if (!this.#native || this.#error || this.#closeInfo) {
      return Promise.reject(this.failure());
    }
    const waiter = Promise.withResolvers<Uint8Array<ArrayBuffer>>();
    this.#datagramWaiters.push(waiter);
    return waiter.promise;
  }

  /** The oldest datagram the shim holds for this connection, if any. */
  #takeDatagram(): Uint8Array<ArrayBuffer> | undefined {
    if (!this.#native || this.#datagramWaiters.length > 0) return undefined;
    const n = this.runtime.lib.stoq_conn_dgram_take(
      this.#ptr,
      datagramScratch,
      datagramScratch.length,
    );
    return n < 0 ? undefined : datagramScratch.slice(0, n);
  }

  /** Hands queued datagrams to waiting readers. */
  #feedDatagramWaiters(): void {
    while (this.#datagramWaiters.length > 0 && this.#native) {
      const n = this.runtime.lib.stoq_conn_dgram_take(
        this.#ptr,
        datagramScratch,
        datagramScratch.length,
      );
      if (n < 0) break;
      this.#datagramWaiters.shift()!.resolve(datagramScratch.slice(0, n));
    }
  }

  /**
   * Sends the file at `path` on a new unidirectional stream and finishes the stream: the shim
   * reads the file with io_uring into registered buffers that msquic sends from, so the bytes
   * never enter JS. The peer takes the stream from `incomingUnidirectionalStreams` and calls
   * `receiveToFile()` on it (or reads it like any stream). Resolves once the peer acknowledged
   * every byte. Waits for stream credit like {@linkcode createUnidirectionalStream}. Needs
   * read permission for `path`.
   *
   * @throws {StoqError} `FILE_ERROR` when the file cannot be opened or read (also when it
   *   shrinks while it is sent: the stream is reset), `PERMISSION_DENIED` without read
   *   permission, `ABORTED` when the signal fires, the stream's or the connection's error when
   *   they fail (`PEER_STOPPED` when the peer stops reading). It rejects only once the file is
   *   closed.
   */
  async sendFile(
    path: string | URL,
    options: StoqFileOptions = {},
  ): Promise<StoqFileResult> {
    const file = checkFile(path, options, "read", "send a file");
    this.#checkOpen("send a file");
    const lib = this.runtime.lib;
    const fd = new Int32Array(1);
    const size = new BigUint64Array(1);
    const err = lib.stoq_file_open(
      new TextEncoder().encode(`${file}\0`),
      0,
      new Uint8Array(fd.buffer),
      new Uint8Array(size.buffer),
    );
    if (err === EINVAL) {
      // The shim's answer for a device, pipe or socket: its length is not known in advance.
      throw new StoqError(
        "FILE_ERROR",
        `Cannot send ${file}: it is not a regular file; send other sources through a stream (createUnidirectionalStream)`,
        { status: err },
      );
    }
    if (err !== 0) throw fileError(lib, err, `open ${file} for reading`);
    let core: StreamCore;
    try {
      core = await this.#openStream(true, { signal: options.signal });
    } catch (e) {
      lib.stoq_file_close(fd[0]);
      throw e;
    }
    return await core.sendFile(fd[0], Number(size[0]), file, options);
  }

  /** Connection statistics from msquic. */
  stats(): StoqConnectionStats {
    this.#checkOpen("read stats");
    const out = new BigUint64Array(Stat.MAX);
    const st = this.runtime.lib.stoq_conn_stats(
      this.#ptr,
      new Uint8Array(out.buffer),
      Stat.MAX,
    );
    if (st !== 0) throw statusError(st, "read connection stats");
    const v = (k: number) => Number(out[k]);
    return {
      rttMs: v(Stat.RTT_US) / 1000,
      minRttMs: v(Stat.MIN_RTT_US) / 1000,
      congestionWindow: v(Stat.CWND),
      bytesSent: v(Stat.SEND_BYTES),
      bytesReceived: v(Stat.RECV_BYTES),
      streamBytesSent: v(Stat.SEND_STREAM_BYTES),
      streamBytesReceived: v(Stat.RECV_STREAM_BYTES),
      packetsSent: v(Stat.SEND_PACKETS),
      packetsReceived: v(Stat.RECV_PACKETS),
      packetsLost: v(Stat.LOST_PACKETS),
      handshakeMs: v(Stat.HANDSHAKE_US) / 1000,
      pathMtu: v(Stat.PATH_MTU),
      datagramsDropped: v(Stat.DGRAM_DROPPED),
    };
  }

  /**
   * Closes the connection with an application code. Data in flight on open streams is
   * abandoned; streams' pending reads and writes reject. Idempotent.
   */
  close(info: Partial<StoqCloseInfo> = {}): void {
    if (typeof info !== "object" || info === null) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot close the connection as the close info must be an object: current value is ${
          info === null ? "null" : typeof info
        }`,
      );
    }
    const closeCode = info.closeCode ?? 0;
    if (!Number.isSafeInteger(closeCode) || closeCode < 0) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot close the connection as 'closeCode' must be a non-negative integer: current value is ${closeCode}`,
      );
    }
    if (!this.#native || this.#closeInfo || this.#error) return;
    this.#closeInfo = { closeCode, reason: info.reason ?? "" };
    if (this.#startPending) {
      // Never started (0-RTT, nothing written yet): start it first, then shut it down.
      this.requestStart();
      this.runtime.submitLast(
        Op.CONN_SHUTDOWN,
        this.#ptr,
        0n,
        BigInt(closeCode),
      );
    } else {
      this.runtime.submit(Op.CONN_SHUTDOWN, this.#ptr, 0n, BigInt(closeCode));
    }
  }

  /**
   * Abandons a connection whose handshake is still running, without telling the peer (msquic's
   * silent shutdown), so nothing waits for a peer that may never answer.
   */
  abandon(): void {
    if (!this.#native || this.#closeInfo || this.#error) return;
    if (this.#connected) return this.close();
    this.#closeInfo = { closeCode: 0, reason: "connect abandoned" };
    this.requestStart();
    this.runtime.submitLast(Op.CONN_SHUTDOWN, this.#ptr, SHUTDOWN_SILENT, 0n);
  }

  /** Closes and waits until everything is freed. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.finished;
  }

  /** @internal */
  streamClosed(stream: StreamCore): void {
    this.#streams.delete(stream);
  }

  #onEvent(ev: Records, i: number): void {
    switch (ev.type(i)) {
      case Ev.CONN_CONNECTED: {
        this.#connected = true;
        this.#resumed = Events.Connected.resumed(ev, i);
        // A resumed session carries no certificate: the one verified when it began stands.
        if (this.#resumed && this.#hooks.resumedPeer) {
          this.#peerCertificate ??= this.#hooks.resumedPeer;
        }
        const buf = new Uint8Array(256);
        const n = this.runtime.lib.stoq_conn_alpn(this.#ptr, buf, buf.length);
        this.#protocol = n > 0
          ? new TextDecoder().decode(buf.subarray(0, n))
          : undefined;
        this.#handshake.resolve();
        this.#hooks.onConnected?.(this);
        break;
      }
      case Ev.CONN_SHUTDOWN_TRANSPORT:
        this.#error ??= connectionError(
          Events.TransportShutdown.status(ev, i),
          this.#connected,
        );
        break;
      case Ev.CONN_SHUTDOWN_PEER: {
        const code = Events.PeerCode.appCode(ev, i);
        this.#closeInfo ??= { closeCode: Number(code), reason: "" };
        this.#error ??= new StoqError(
          "CONNECTION_CLOSED",
          `The peer closed the connection with code ${code}`,
          { appCode: code },
        );
        break;
      }
      case Ev.CONN_PEER_STREAM: {
        const unidirectional = Events.PeerStream.unidirectional(ev, i);
        const core = new StreamCore(
          this,
          Events.PeerStream.handle(ev, i)!,
          Events.PeerStream.streamId(ev, i),
          {
            send: !unidirectional,
            receive: true,
            local: false,
            earlyData: Events.PeerStream.zeroRtt(ev, i),
          },
        );
        this.#streams.add(core);
        (unidirectional ? this.#uniBacklog : this.#bidiBacklog).push(core);
        this.#offerStream(unidirectional);
        break;
      }
      case Ev.CONN_DGRAM_STATE:
        this.#datagramSendEnabled = Events.DatagramState.sendEnabled(ev, i);
        this.#maxDatagramSize = Events.DatagramState.maxSendLength(ev, i);
        break;
      case Ev.CONN_DGRAM_READY:
        this.#feedDatagramWaiters();
        break;
      case Ev.CONN_TICKET:
        this.#hooks.onTicket?.(this.#takeBuffer(ev, i));
        break;
      case Ev.CONN_RESUMED: {
        const hash = Events.Resumed.peerHash(ev, i);
        if (hash.some((b) => b !== 0)) {
          this.#peerCertificate ??= this.#hooks.onResumed?.(
            Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join(""),
          );
        }
        break;
      }
      case Ev.CONN_PEER_REJECTED: {
        const verifyError = Events.PeerRejected.verifyError(ev, i);
        let detail = "";
        if (verifyError !== 0) {
          const text = new Uint8Array(256);
          const n = this.runtime.lib.stoq_x509_error(
            verifyError,
            text,
            text.length,
          );
          detail = ` (${new TextDecoder().decode(text.subarray(0, n))})`;
        }
        const reason = Events.PeerRejected.reason(ev, i);
        this.#error ??= new StoqError(
          "CERTIFICATE_REJECTED",
          `${
            REJECTIONS[reason] ?? "The peer's certificate was refused"
          }${detail}`,
          { status: verifyError },
        );
        break;
      }
      case Ev.CONN_PEER_CERT:
        this.#verifyPeer(ev, i);
        break;
      case Ev.CONN_SHUTDOWN_COMPLETE:
        this.#finish();
        break;
    }
  }

  /** Hands the oldest backlogged peer stream to a pending read of the incoming stream. */
  #offerStream(unidirectional: boolean): void {
    const wanted = unidirectional ? this.#uniWanted : this.#bidiWanted;
    const backlog = unidirectional ? this.#uniBacklog : this.#bidiBacklog;
    if (!wanted || backlog.length === 0) return;
    const core = backlog.shift()!;
    if (unidirectional) {
      this.#uniWanted = false;
      this.#uni!.enqueue(core.readable!);
    } else {
      this.#bidiWanted = false;
      this.#bidi!.enqueue({
        readable: core.readable!,
        writable: core.writable!,
      });
    }
    core.accept();
  }

  /** Copies a buffer the shim handed over, then frees the shim's copy. */
  #takeBuffer(ev: Records, i: number): Uint8Array<ArrayBuffer> {
    const ptr = Events.OwnedBuffer.data(ev, i);
    const data = new Uint8Array(Events.OwnedBuffer.length(ev, i));
    if (ptr) Deno.UnsafePointerView.copyInto(ptr, data);
    this.runtime.lib.stoq_buf_free(this.runtime.rt, ptr);
    return data;
  }

  /** The shim's checks passed (or there were none): the JS verifier decides. */
  #verifyPeer(ev: Records, i: number): void {
    const copy = (ptr: Deno.PointerValue, len: number) => {
      const out = new Uint8Array(len);
      if (ptr && len > 0) Deno.UnsafePointerView.copyInto(ptr, out);
      return out;
    };
    const peer = {
      leaf: copy(
        Events.PeerCert.leaf(ev, i),
        Events.PeerCert.leafLength(ev, i),
      ),
      chain: copy(
        Events.PeerCert.chain(ev, i),
        Events.PeerCert.chainLength(ev, i),
      ),
    };
    this.#peerCertificate = peer;
    const verifyPeer = this.#hooks.verifyPeer;
    Promise.resolve()
      .then(() => verifyPeer ? verifyPeer(peer) : true)
      .then((ok) => {
        if (!ok) {
          this.#error ??= new StoqError(
            "CERTIFICATE_REJECTED",
            "The peer's certificate was refused by verifyPeer",
          );
        } else this.#hooks.onPeerVerified?.(peer);
        return ok;
      }, (err) => {
        this.#error ??= new StoqError(
          "CERTIFICATE_REJECTED",
          `The peer's certificate was refused: ${
            err instanceof Error ? err.message : err
          }`,
          { cause: err },
        );
        return false;
      })
      .then((ok) => {
        if (!this.#native) return;
        this.runtime.lib.stoq_conn_cert_complete(
          this.#ptr,
          ok ? 1 : 0,
          TLS_ALERT_BAD_CERTIFICATE,
        );
      });
  }

  /** Ends an incoming-streams ReadableStream as the connection ended. */
  #endIncoming(c: ReadableStreamDefaultController<never>): void {
    try {
      if (this.#error && this.#error.code !== "CONNECTION_CLOSED") {
        c.error(this.#error);
      } else c.close();
    } catch { /* already closed by a cancel */ }
  }

  #finish(): void {
    if (!this.#native) return;
    // msquic completes every stream before its connection; anything left (streams nobody
    // accepted) is freed here.
    for (const s of [...this.#streams]) s.finish(true, true);
    this.#bidiBacklog = [];
    this.#uniBacklog = [];
    for (const w of this.#datagramWaiters) w.reject(this.failure());
    this.#datagramWaiters = [];
    if (this.#bidi) this.#endIncoming(this.#bidi);
    if (this.#uni) this.#endIncoming(this.#uni);
    this.#native = false;
    this.runtime.unregister(this.#id);
    // Queued operations that name this handle must run before it is freed.
    this.runtime.flush();
    const freed = this.runtime.closeHandle(CloseKind.CONNECTION, this.#ptr);
    if (!this.#connected) this.#handshake.reject(this.failure());
    if (this.#error && this.#error.code !== "CONNECTION_CLOSED") {
      this.#closed.reject(this.#error);
    } else {
      this.#closed.resolve(this.#closeInfo ?? { closeCode: 0, reason: "" });
    }
    freed.then(() => {
      this.#hooks.onClosed?.(this);
      this.#finished.resolve();
    });
  }
}
