/**
 * Phoenix: the one-line API over STOQ. An app gets a certificate from TrustChain on its own,
 * accepts and connects, sends whole messages and streams over a transparent connection pool,
 * stripes large payloads over several connections, and reports Gbit/s.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { StoqError } from "../errors.ts";
import { ConnectionPool } from "../pool/mod.ts";
import {
  type CongestionControl,
  type PeerVerifier,
  type StoqAddr,
  type StoqBidirectionalStream,
  type StoqConnection,
  StoqEndpoint,
  type StoqTransportOptions,
} from "../transport/mod.ts";
import {
  CertificateRotator,
  federationVerifier,
  listenWithIdentity,
  peerIdentity,
} from "../trustchain/mod.ts";
import { PhoenixBuilder } from "./builder.ts";
import {
  loadConfig,
  NETWORK_SECTION,
  PHOENIX_TRUSTCHAIN_SECTION,
  phoenixOptionsFrom,
} from "./config.ts";
import {
  CHUNK_HEADER_SIZE,
  chunkHeader,
  type ChunkInfo,
  ExactReader,
  Inbox,
  Kind,
  messageHeader,
  parseChunkHeader,
  PHOENIX_ALPN,
  protocolError,
  readKind,
  Reply,
  streamHeader,
} from "./framing.ts";
import {
  type AppIdentity,
  type CertificateSummary,
  parseTarget,
  phoenixDataDir,
  remoteIdentity,
  type RemoteTrustChain,
  staticIdentity,
  summarize,
  userCaIdentity,
} from "./identity.ts";
import { PhoenixMeter, phoenixRegistry, type PhoenixStats } from "./stats.ts";

/**
 * Options for {@linkcode Phoenix.create}; {@linkcode PhoenixBuilder} sets the same fluently.
 *
 * @example A high-throughput app that only connects
 * ```ts
 * import type { PhoenixOptions } from "../../mod.ts";
 * const options: PhoenixOptions = { highPerformance: true, listen: false, maxConnections: 10 };
 * console.log(options.maxConnections); // 10
 * ```
 */
export interface PhoenixOptions {
  /**
   * Tune for throughput: msquic's max-throughput profile, large windows, BBR.
   * @default {false}
   */
  highPerformance?: boolean;
  /**
   * Outgoing connections open at most, across all peers; callers beyond it wait.
   * @default {100}
   */
  maxConnections?: number;
  /**
   * Get a certificate from TrustChain on start and renew it before it expires. Without it,
   * give `certificate`.
   * @default {true}
   */
  autoCertificates?: boolean;
  /**
   * A certificate and the CA roots peers must chain to, when `autoCertificates` is false.
   * @default {undefined}
   */
  certificate?: { cert: string; key: string; caCerts: string[] };
  /**
   * Congestion controller.
   * @default {"cubic" ("bbr" with highPerformance)}
   */
  congestionControl?: CongestionControl;
  /**
   * Where to accept connections, or `false` to only connect.
   * @default {{ hostname: "::", port: 0 }}
   */
  listen?: { hostname?: string; port?: number } | false;
  /**
   * Provision from a remote TrustChain node instead of the per-user CA.
   * @default {undefined}
   */
  trustChain?: RemoteTrustChain;
  /**
   * Where the per-user CA lives.
   * @default {phoenixDataDir()}
   */
  dataDir?: string;
  /**
   * The largest message (or multiplexed transfer) this app accepts, in bytes; senders of a
   * larger one get `MESSAGE_TOO_LARGE`.
   * @default {67108864} (64 MiB)
   */
  maxMessageSize?: number;
  /**
   * Milliseconds a pooled connection with nothing in flight stays open.
   * @default {30000}
   */
  idleTimeoutMs?: number;
  /**
   * The sliding window of `stats().sendGbps` / `receiveGbps`, in milliseconds.
   * @default {1000}
   */
  statsWindowMs?: number;
  /**
   * Path of `libstoq.so` (see {@linkcode StoqEndpointOptions.library}).
   * @default {undefined}
   */
  library?: string;
}

/**
 * A whole message from a peer.
 *
 * @example Reading messages
 * ```ts
 * import type { PhoenixMessage } from "../../mod.ts";
 * const show = (m: PhoenixMessage) => `${m.from}: ${m.data.byteLength} bytes`;
 * console.log(show({ from: "peer.stoq.local", data: new Uint8Array(3) })); // peer.stoq.local: 3 bytes
 * ```
 */
export interface PhoenixMessage {
  /** Who sent it: the name its certificate carries, or its address. */
  from: string;
  /** The message. */
  data: Uint8Array;
}

/**
 * A stream from a peer (sent with `streamData`). Reading it to its end tells the sender it was
 * delivered; cancelling it refuses the rest.
 *
 * @example Reading a stream
 * ```ts
 * import type { PhoenixStream } from "../../mod.ts";
 * async function size(s: PhoenixStream): Promise<number> {
 *   let n = 0;
 *   for await (const chunk of s.readable) n += chunk.byteLength;
 *   return n;
 * }
 * console.log(typeof size);
 * ```
 */
export interface PhoenixStream {
  /** Who sent it. */
  from: string;
  /** The bytes. */
  readable: ReadableStream<Uint8Array>;
}

/**
 * What `streamData` sends: an async iterable, a `ReadableStream`, or a function called for each
 * next chunk that returns `null` at the end.
 *
 * @example A generated stream
 * ```ts
 * import type { StreamSource } from "../../mod.ts";
 * let left = 3;
 * const source: StreamSource = () => left-- > 0 ? new Uint8Array(1024) : null;
 * console.log(typeof source);
 * ```
 */
export type StreamSource =
  | AsyncIterable<Uint8Array>
  | Iterable<Uint8Array>
  | ReadableStream<Uint8Array>
  | (() => Uint8Array | null | Promise<Uint8Array | null>);

/** STOP_SENDING / RESET codes Phoenix uses on its streams. */
const CODE_REFUSED = 0x50;

const DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024;
const CHUNK_MIN = 256 * 1024;
const CHUNK_MAX = 4 * 1024 * 1024;
const MAX_TRANSFERS = 64;
const TRANSFER_TIMEOUT_MS = 60_000;
const STREAMS_PER_CONNECTION = 1024;

const APP_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** What accepts connections: a TrustChain identity listener, or a plain one. */
interface Acceptor extends AsyncIterable<StoqConnection> {
  readonly addr: StoqAddr;
  close(): void;
}

/** A multiplexed transfer being reassembled. */
interface Transfer {
  from: string;
  sha256: string;
  data: Uint8Array;
  received: number;
  offsets: Set<number>;
  timer: ReturnType<typeof setTimeout>;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function checkBytes(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot ${what} as the data must be a Uint8Array: current value is ${typeof value}`,
    );
  }
  return value;
}

/** The canonical peer key: `[ipv6]:port` or `host:port`. */
function peerKey(target: string | { hostname: string; port: number }): {
  key: string;
  hostname: string;
  port: number;
} {
  const { hostname, port } = typeof target === "string"
    ? parseTarget(target)
    : parseTarget(
      typeof target?.hostname === "string" && target.hostname.includes(":")
        ? `[${target.hostname}]:${target?.port}`
        : `${target?.hostname}:${target?.port}`,
    );
  const key = hostname.includes(":")
    ? `[${hostname}]:${port}`
    : `${hostname}:${port}`;
  return { key, hostname, port };
}

async function* chunksOf(source: StreamSource): AsyncGenerator<Uint8Array> {
  if (typeof source === "function") {
    while (true) {
      const chunk = await source();
      if (chunk === null || chunk === undefined) return;
      yield chunk;
    }
  }
  if (source instanceof ReadableStream) {
    yield* source;
    return;
  }
  if (Symbol.asyncIterator in Object(source)) {
    yield* source as AsyncIterable<Uint8Array>;
    return;
  }
  if (Symbol.iterator in Object(source)) {
    yield* source as Iterable<Uint8Array>;
    return;
  }
  throw new StoqError(
    "INVALID_ARGUMENT",
    "Cannot stream data as 'source' must be an async iterable, a ReadableStream or a function returning chunks (null at the end)",
  );
}

/**
 * A peer, reached through the app's connection pool: each send takes a live connection with
 * room for another stream, and a connection that died is replaced on the next send.
 *
 * @example Sending a message
 * ```ts
 * import { Phoenix } from "../../mod.ts";
 * const dataDir = await Deno.makeTempDir();
 * await using a = await Phoenix.create("alice", { dataDir });
 * await using b = await Phoenix.create("bob", { dataDir });
 * const conn = await a.connect({ hostname: "::1", port: b.addr.port });
 * await conn.sendData(new TextEncoder().encode("hi"));
 * for await (const m of b.messages) {
 *   console.log(m.from, new TextDecoder().decode(m.data)); // alice.stoq.local hi
 *   break;
 * }
 * ```
 */
export class PhoenixConnection {
  readonly #phoenix: Phoenix;
  /** The peer, as `[ipv6]:port` or `host:port`. */
  readonly peer: string;

  /** Made by {@linkcode Phoenix.connect}. */
  constructor(token: typeof connectionToken, phoenix: Phoenix, peer: string) {
    if (token !== connectionToken) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        "Cannot construct a PhoenixConnection: use Phoenix.connect()",
      );
    }
    this.#phoenix = phoenix;
    this.peer = peer;
  }

  /**
   * Sends one message on its own stream; the peer receives it whole (`phoenix.messages`).
   * Resolves once the peer holds it.
   *
   * @throws {StoqError} `MESSAGE_TOO_LARGE` over the peer's limit, `REFUSED` when the peer
   *   would not take it, `ABORTED`, or the transport's errors.
   */
  sendData(
    data: Uint8Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    return sendMessage(this.#phoenix, this.peer, data, options.signal);
  }

  /**
   * Sends a stream of chunks (with back-pressure) that the peer reads as one
   * {@linkcode PhoenixStream}. Resolves once the peer has read it to its end.
   *
   * @throws {StoqError} `REFUSED` when the peer cancelled it, `ABORTED`, `INVALID_ARGUMENT`,
   *   or the transport's errors.
   */
  streamData(
    source: StreamSource,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    return sendStream(this.#phoenix, this.peer, source, options.signal);
  }
}

const connectionToken = Symbol("phoenix.connection");

// Module-private access to a Phoenix app's internals, for the send paths below.
let withStream: <T>(
  phoenix: Phoenix,
  peer: string,
  signal: AbortSignal | undefined,
  use: (stream: StoqBidirectionalStream) => Promise<T>,
) => Promise<T>;
let meterOf: (phoenix: Phoenix) => PhoenixMeter;

/** Reads the one-byte reply; what it means for the sender. */
async function readReply(
  readable: ReadableStream<Uint8Array>,
  what: string,
): Promise<void> {
  const reader = readable.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const code = value?.[0];
  if (code === Reply.OK) return;
  if (code === Reply.TOO_LARGE) {
    throw new StoqError(
      "MESSAGE_TOO_LARGE",
      `Cannot send the ${what}: it is larger than the peer accepts (its maxMessageSize); split it, or send it with streamData`,
    );
  }
  if (code === Reply.MALFORMED) {
    throw protocolError(`the peer could not read the ${what}`);
  }
  throw new StoqError(
    "REFUSED",
    `The peer did not take the ${what} (it stopped reading or is closing)`,
  );
}

/** Writes `parts` and FIN, and reads the reply; a refusal mid-write still yields its reason. */
async function exchange(
  stream: StoqBidirectionalStream,
  parts: Uint8Array[],
  what: string,
): Promise<void> {
  const reply = readReply(stream.readable, what);
  reply.catch(() => {});
  try {
    const w = stream.writable.getWriter();
    for (const part of parts) if (part.byteLength) await w.write(part);
    await w.close();
  } catch (err) {
    // The peer stopped the stream early: its answer says why, if it gave one.
    await reply;
    throw err;
  }
  await reply;
}

async function sendMessage(
  phoenix: Phoenix,
  peer: string,
  data: Uint8Array,
  signal?: AbortSignal,
): Promise<void> {
  checkBytes(data, "send the message");
  await withStream(phoenix, peer, signal, async (stream) => {
    await exchange(stream, [messageHeader(data.byteLength), data], "message");
  });
  const meter = meterOf(phoenix);
  meter.sent(data.byteLength);
  meter.messagesSent++;
}

async function sendStream(
  phoenix: Phoenix,
  peer: string,
  source: StreamSource,
  signal?: AbortSignal,
): Promise<void> {
  const chunks = chunksOf(source);
  const meter = meterOf(phoenix);
  await withStream(phoenix, peer, signal, async (stream) => {
    meter.streamsOpen++;
    try {
      const reply = readReply(stream.readable, "stream");
      reply.catch(() => {});
      const w = stream.writable.getWriter();
      try {
        await w.write(streamHeader());
        for await (const chunk of chunks) {
          checkBytes(chunk, "stream data");
          if (signal?.aborted) {
            throw new StoqError(
              "ABORTED",
              "Gave up streaming: the signal was aborted",
              {
                cause: signal.reason,
              },
            );
          }
          await w.write(chunk);
          meter.sent(chunk.byteLength);
        }
        await w.close();
      } catch (err) {
        await w.abort(CODE_REFUSED).catch(() => {});
        if (err instanceof StoqError && err.code === "PEER_STOPPED") {
          await reply;
        }
        throw err;
      }
      await reply;
      meter.streamsSent++;
    } finally {
      meter.streamsOpen--;
    }
  });
}

/**
 * A Phoenix app: one line to start, automatic certificates, pooled connections to its peers,
 * whole messages and streams, multiplexed sends, and built-in monitoring.
 *
 * @example Two apps exchange a message
 * ```ts
 * import { Phoenix } from "../../mod.ts";
 * const dataDir = await Deno.makeTempDir(); // usually the per-user data directory
 * await using server = await Phoenix.create("server-app", { dataDir });
 * await using client = await Phoenix.create("client-app", { dataDir, listen: false });
 * const conn = await client.connect(`[::1]:${server.addr.port}`);
 * await conn.sendData(new TextEncoder().encode("hello"));
 * for await (const m of server.messages) {
 *   console.log(new TextDecoder().decode(m.data)); // hello
 *   break;
 * }
 * console.log(client.stats().messages.sent); // 1
 * ```
 */
export class Phoenix implements AsyncDisposable {
  /** The app's name (its certificate says `<app>.stoq.local`). */
  readonly app: string;
  readonly #endpoint: StoqEndpoint;
  readonly #identity: AppIdentity;
  readonly #transport: StoqTransportOptions;
  readonly #maxMessage: number;
  readonly #pool: ConnectionPool;
  readonly #meter: PhoenixMeter;
  readonly #messages: Inbox<PhoenixMessage>;
  readonly #streams: Inbox<PhoenixStream>;
  readonly #incoming = new Set<StoqConnection>();
  readonly #transfers = new Map<string, Transfer>();
  readonly #verifiers = new Map<string, PeerVerifier>();
  readonly #pooled = new Set<StoqConnection>();
  #listener: Acceptor | undefined;
  #rotator: CertificateRotator | undefined;
  #current: { cert: string; key: string } | undefined;
  #registry: ReturnType<typeof phoenixRegistry> | undefined;
  #closing: Promise<void> | undefined;

  static {
    withStream = (phoenix, peer, signal, use) =>
      phoenix.#withStream(peer, signal, use);
    meterOf = (phoenix) => phoenix.#meter;
  }

  private constructor(
    app: string,
    endpoint: StoqEndpoint,
    identity: AppIdentity,
    transport: StoqTransportOptions,
    options: PhoenixOptions,
  ) {
    this.app = app;
    this.#endpoint = endpoint;
    this.#identity = identity;
    this.#transport = transport;
    this.#maxMessage = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE;
    this.#meter = new PhoenixMeter(options.statsWindowMs ?? 1000);
    this.#messages = new Inbox(
      1024,
      Math.max(this.#maxMessage, 64 * 1024 * 1024),
    );
    this.#streams = new Inbox(1024, Infinity);
    this.#pool = new ConnectionPool({
      connect: (peer, signal) => this.#connectPeer(peer, signal),
      maxConnections: options.maxConnections,
      idleTimeoutMs: options.idleTimeoutMs,
      streamsPerConnection: STREAMS_PER_CONNECTION,
    });
  }

  /**
   * Starts an app: gets its certificate (from the per-user CA, created on first use, or from
   * `trustChain`), listens (unless `listen: false`) and is ready to connect.
   *
   * @param app The app's name, a DNS label (`my-app`).
   * @param options How it runs; see {@linkcode PhoenixOptions}.
   * @throws {StoqError} `INVALID_ARGUMENT` for bad options, `ADDRESS_IN_USE`, and TrustChain's
   *   errors.
   */
  static async create(
    app: string,
    options: PhoenixOptions = {},
  ): Promise<Phoenix> {
    if (typeof app !== "string" || !APP_NAME.test(app)) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot create the app as its name must be a DNS label (a-z, 0-9, '-'): current value is ${
          JSON.stringify(app)
        }`,
      );
    }
    if (typeof options !== "object" || options === null) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        "Cannot create the app as the options must be an object",
      );
    }
    const o = options;
    const maxMessage = o.maxMessageSize ?? DEFAULT_MAX_MESSAGE;
    if (!Number.isSafeInteger(maxMessage) || maxMessage < 1) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot create the app as 'maxMessageSize' must be a positive integer: current value is ${maxMessage}`,
      );
    }
    const high = o.highPerformance === true;
    const transport: StoqTransportOptions = {
      congestionControl: o.congestionControl ?? (high ? "bbr" : "cubic"),
      maxConcurrentBidirectionalStreams: STREAMS_PER_CONNECTION,
      maxIdleTimeout: 60_000,
      ...(high
        ? { streamReceiveWindow: 8 << 20, connectionReceiveWindow: 64 << 20 }
        : {}),
    };
    const listen = o.listen === false ? undefined : (o.listen ?? {});
    const endpoint = new StoqEndpoint({
      hostname: listen?.hostname ?? "::",
      port: listen?.port ?? 0,
      profile: high ? "max-throughput" : "low-latency",
      library: o.library,
    });
    let identity: AppIdentity | undefined;
    try {
      if (o.autoCertificates === false) {
        identity = staticIdentity(o.certificate);
      } else if (o.trustChain) {
        identity = await remoteIdentity(app, endpoint, o.trustChain);
      } else {
        identity = await userCaIdentity(app, o.dataDir ?? phoenixDataDir());
      }
      const phoenix = new Phoenix(app, endpoint, identity, transport, o);
      await phoenix.#start(listen !== undefined);
      return phoenix;
    } catch (err) {
      await identity?.close();
      await endpoint.close();
      throw err;
    }
  }

  /** Fluent set-up; see {@linkcode PhoenixBuilder}. */
  static builder(app: string): PhoenixBuilder {
    return new PhoenixBuilder(app);
  }

  /**
   * Starts an app from a TOML file with the node's `[network]` and `[trustchain]` keys
   * (`listen_addr`, `max_connections`, `quic_config`, `congestion_control`; `service`,
   * `root_file`, `data_dir`).
   *
   * @param path The file.
   * @param app The app's name.
   * @param overrides Options that win over the file's.
   * @throws {StoqError} `CONFIG_INVALID` naming the file, line and key; and as
   *   {@linkcode Phoenix.create}.
   */
  static async fromConfig(
    path: string,
    app: string,
    overrides: PhoenixOptions = {},
  ): Promise<Phoenix> {
    const config = await loadConfig(path, {
      network: NETWORK_SECTION,
      trustchain: PHOENIX_TRUSTCHAIN_SECTION,
    });
    return await Phoenix.create(app, {
      ...phoenixOptionsFrom(config),
      ...overrides,
    });
  }

  async #start(listen: boolean): Promise<void> {
    const id = this.#identity;
    const base = { ...this.#transport, alpnProtocols: [PHOENIX_ALPN] };
    if (id.kind === "static") {
      this.#current = id;
      if (listen) {
        const listener = this.#endpoint.listen({
          ...base,
          cert: id.cert,
          key: id.key,
          caCerts: id.caCerts,
          requireClientCertificate: true,
        });
        this.#listener = {
          addr: listener.addr,
          close: () => listener.stop(),
          [Symbol.asyncIterator]: () => listener[Symbol.asyncIterator](),
        };
      }
    } else if (listen) {
      this.#listener = await listenWithIdentity(this.#endpoint, {
        ...base,
        provision: () => id.provision(),
        federation: id.federation,
        onRenew: (identity) => this.#current = identity,
      });
    } else {
      // Only connecting: the client certificate still renews before it expires.
      this.#rotator = new CertificateRotator({
        provision: () => id.provision(),
        onRenew: (identity) => this.#current = identity,
      });
      this.#current = await this.#rotator.start();
    }
    if (this.#listener) {
      (async () => {
        for await (const conn of this.#listener!) {
          this.#incoming.add(conn);
          conn.finished.then(() => this.#incoming.delete(conn));
          this.#serve(conn);
        }
      })().catch(() => {/* the listener stopped */});
    }
  }

  /**
   * The certificate the app presents now (renewed before it expires): its PEM chain, names and
   * expiry. With automatic certificates the names are `<app>.stoq.local`, `localhost` and `::1`.
   *
   * @example The names an app is reachable by
   * ```ts
   * import { Phoenix } from "../../mod.ts";
   * Deno.env.set("STOQ_HOME", await Deno.makeTempDir());
   * await using app = await Phoenix.create("named", { listen: false });
   * console.log(app.certificate.names); // [ "named.stoq.local", "localhost", "::1" ]
   * ```
   */
  get certificate(): CertificateSummary {
    this.#checkOpen("read the certificate");
    return summarize(this.#current!.cert);
  }

  /** Where the app accepts connections (port 0 when it does not listen). */
  get addr(): { hostname: string; port: number } {
    const a = this.#listener?.addr ?? this.#endpoint.addr;
    return { hostname: a.hostname, port: this.#listener ? a.port : 0 };
  }

  /**
   * A handle on a peer, with a live connection in the pool (opened now unless one is open).
   *
   * @param target `"[ipv6]:port"`, `"host:port"` or `{ hostname, port }`.
   * @throws {StoqError} `INVALID_ARGUMENT`, `CERTIFICATE_REJECTED` when the peer is not of the
   *   federation, `ABORTED`, and the transport's connect errors.
   */
  async connect(
    target: string | { hostname: string; port: number },
    options: { signal?: AbortSignal } = {},
  ): Promise<PhoenixConnection> {
    this.#checkOpen("connect");
    const { key } = peerKey(target);
    const t0 = performance.now();
    using lease = await this.#pool.acquire(key, options);
    if (!lease.opened) this.#meter.connected("pooled", performance.now() - t0);
    return new PhoenixConnection(connectionToken, this, key);
  }

  /** Whole messages from peers, as they arrive. Leaving a loop leaves the rest for the next. */
  get messages(): AsyncIterable<PhoenixMessage> {
    return this.#messages;
  }

  /** Streams from peers (`streamData`), as they arrive. */
  get streams(): AsyncIterable<PhoenixStream> {
    return this.#streams;
  }

  /**
   * Keeps `count` pooled connections to `target` open for {@linkcode sendMultiplexed}.
   *
   * @throws {StoqError} `INVALID_ARGUMENT` when `count` is not 1 to `maxConnections`.
   */
  async enableMultiplexing(
    target: string | { hostname: string; port: number },
    count: number,
  ): Promise<void> {
    this.#checkOpen("enable multiplexing");
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot enable multiplexing as 'count' must be a positive integer: current value is ${count}`,
      );
    }
    await this.#pool.pin(peerKey(target).key, count);
  }

  /**
   * Sends `data` striped in chunks over the connections to `target` (see
   * {@linkcode enableMultiplexing}); the peer reassembles it, checks its SHA-256 and receives it
   * as one message. A connection that dies mid-transfer has its chunks sent again on the others.
   *
   * @throws {StoqError} `MESSAGE_TOO_LARGE`, `PROTOCOL_ERROR` when the peer's reassembly did
   *   not match, or the last transport error when every connection failed.
   */
  async sendMultiplexed(
    target: string | { hostname: string; port: number },
    data: Uint8Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    this.#checkOpen("send");
    checkBytes(data, "send multiplexed data");
    const { key } = peerKey(target);
    let conns = this.#pool.connections(key);
    if (conns.length === 0) conns = await this.#pool.pin(key, 1, options);
    const transfer = crypto.getRandomValues(new Uint8Array(16));
    const sha256 = createHash("sha256").update(data).digest();
    const size = Math.min(
      CHUNK_MAX,
      Math.max(CHUNK_MIN, Math.ceil(data.byteLength / (conns.length * 4))),
    );
    const pending: number[] = [];
    for (let off = 0; off < data.byteLength; off += size) pending.push(off);
    if (pending.length === 0) pending.push(0);
    let lastError: unknown;
    let verdict: unknown;
    const send = async (conn: StoqConnection) => {
      while (pending.length > 0 && verdict === undefined) {
        if (options.signal?.aborted) {
          verdict = new StoqError(
            "ABORTED",
            "Gave up sending: the signal was aborted",
            {
              cause: options.signal.reason,
            },
          );
          return;
        }
        const offset = pending.shift()!;
        const length = Math.min(size, data.byteLength - offset);
        const info: ChunkInfo = {
          transfer,
          sha256,
          total: data.byteLength,
          offset,
          length,
        };
        try {
          const stream = await conn.createBidirectionalStream();
          await exchange(
            stream,
            [chunkHeader(info), data.subarray(offset, offset + length)],
            "multiplexed message",
          );
          this.#meter.sent(length);
        } catch (err) {
          if (
            err instanceof StoqError &&
            (err.code === "MESSAGE_TOO_LARGE" ||
              err.code === "PROTOCOL_ERROR" ||
              err.code === "REFUSED")
          ) {
            verdict ??= err;
            return;
          }
          // This connection failed: its chunk goes to the others.
          pending.unshift(offset);
          lastError = err;
          return;
        }
      }
    };
    // Two chunks in flight per connection.
    await Promise.all(conns.flatMap((c) => [send(c), send(c)]));
    if (verdict !== undefined) throw verdict;
    if (pending.length > 0) {
      throw lastError ??
        new StoqError(
          "CONNECTION_CLOSED",
          "Every connection to the peer failed",
        );
    }
    this.#meter.messagesSent++;
  }

  /**
   * The pooled connections open now: to `target`, or to every peer (for their own `stats()`,
   * or to close one).
   */
  connections(
    target?: string | { hostname: string; port: number },
  ): StoqConnection[] {
    return target === undefined
      ? [...this.#pooled]
      : this.#pool.connections(peerKey(target).key);
  }

  /** Traffic and connection figures; see {@linkcode PhoenixStats}. */
  stats(): PhoenixStats {
    const pool = this.#pool.stats();
    let rtt = 0;
    let rttCount = 0;
    let lost = 0;
    for (const conn of [...this.#incoming, ...this.#pooled]) {
      try {
        const s = conn.stats();
        rtt += s.rttMs;
        rttCount++;
        lost += s.packetsLost;
      } catch { /* closed meanwhile */ }
    }
    return this.#meter.snapshot({
      connections: {
        open: pool.open + this.#incoming.size,
        pooled: pool.open,
        idle: pool.idle,
        incoming: this.#incoming.size,
      },
      rttMs: rttCount ? rtt / rttCount : 0,
      packetsLost: lost,
    });
  }

  /** The same figures as Prometheus text. */
  metrics(): Promise<string> {
    this.#registry ??= phoenixRegistry(this.app, () => this.stats());
    return this.#registry.metrics();
  }

  /**
   * Stops accepting, closes every connection and releases the CA. Messages already queued can
   * still be read. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#listener?.close();
      this.#rotator?.close();
      await this.#pool.close();
      await this.#endpoint.close();
      for (const t of this.#transfers.values()) clearTimeout(t.timer);
      this.#transfers.clear();
      this.#messages.close();
      this.#streams.close();
      await this.#identity.close();
    })();
    return this.#closing;
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #checkOpen(what: string): void {
    if (this.#closing) {
      throw new StoqError("CLOSED", `Cannot ${what}: the app is closed`);
    }
  }

  /** The pool's way to open a connection to `peer`, validated against the federation. */
  async #connectPeer(
    peer: string,
    signal?: AbortSignal,
  ): Promise<StoqConnection> {
    const { hostname, port } = parseTarget(peer);
    // ::1 is this machine: its apps carry "localhost". Other addresses are checked against the
    // federation (chain and transparency proof); names are checked when given.
    const serverName = hostname === "::1"
      ? "localhost"
      : hostname.includes(":")
      ? undefined
      : hostname;
    const id = this.#identity;
    const t0 = performance.now();
    const conn = await this.#endpoint.connect({
      ...this.#transport,
      hostname,
      port,
      serverName,
      alpnProtocols: [PHOENIX_ALPN],
      ...(id.kind === "static"
        ? { caCerts: id.caCerts }
        : { verifyPeer: this.#verifierFor(id.federation, serverName) }),
      certificate: { cert: this.#current!.cert, key: this.#current!.key },
      signal,
    });
    this.#meter.connected(
      conn.resumed ? "resumed" : "cold",
      performance.now() - t0,
    );
    this.#pooled.add(conn);
    conn.finished.then(() => this.#pooled.delete(conn));
    this.#serve(conn);
    return conn;
  }

  /** One verifier per name, so that connections share a configuration and resume sessions. */
  #verifierFor(
    federation: Parameters<typeof federationVerifier>[0],
    serverName: string | undefined,
  ): PeerVerifier {
    const key = serverName ?? "";
    let verify = this.#verifiers.get(key);
    if (!verify) {
      verify = federationVerifier(federation, { serverName });
      this.#verifiers.set(key, verify);
    }
    return verify;
  }

  /** Uses a stream to `peer`; a stream that cannot open on a dying connection is retried once. */
  async #withStream<T>(
    peer: string,
    signal: AbortSignal | undefined,
    use: (stream: StoqBidirectionalStream) => Promise<T>,
  ): Promise<T> {
    this.#checkOpen("send");
    for (let attempt = 0;; attempt++) {
      const lease = await this.#pool.acquire(peer, { signal });
      let stream: StoqBidirectionalStream;
      try {
        stream = await lease.connection.createBidirectionalStream({ signal });
      } catch (err) {
        lease.release();
        if (
          attempt === 0 && !(err instanceof StoqError && err.code === "ABORTED")
        ) {
          this.#pool.evict(lease.connection);
          continue;
        }
        throw err;
      }
      try {
        return await use(stream);
      } finally {
        lease.release();
      }
    }
  }

  /** Serves the streams a peer opens on `conn`. */
  #serve(conn: StoqConnection): void {
    const from = () => {
      const names = peerIdentity(conn)?.names.filter((n) =>
        n !== "localhost" && !n.includes(":")
      );
      if (names?.length) return names[0];
      const a = conn.remoteAddr;
      return `[${a.hostname}]:${a.port}`;
    };
    (async () => {
      for await (const stream of conn.incomingBidirectionalStreams) {
        this.#receive(stream, from()).catch(() => {/* that stream only */});
      }
    })().catch(() => {/* the connection ended */});
  }

  async #receive(stream: StoqBidirectionalStream, from: string): Promise<void> {
    const reader = new ExactReader(stream.readable);
    const reply = async (code: number) => {
      const w = stream.writable.getWriter();
      try {
        await w.write(Uint8Array.of(code));
        await w.close();
      } catch { /* the sender went away */ }
    };
    let kind: number;
    try {
      kind = await readKind(reader);
    } catch {
      await reader.cancel(CODE_REFUSED);
      return await reply(Reply.MALFORMED);
    }
    try {
      if (kind === Kind.MESSAGE) {
        return await this.#receiveMessage(reader, from, reply);
      }
      if (kind === Kind.STREAM) {
        return await this.#receiveStream(reader, from, reply);
      }
      if (kind === Kind.CHUNK) {
        return await this.#receiveChunk(reader, from, reply);
      }
      throw protocolError(`unknown stream kind ${kind}`);
    } catch (err) {
      await reader.cancel(CODE_REFUSED);
      if (err instanceof StoqError && err.code === "PROTOCOL_ERROR") {
        await reply(Reply.MALFORMED);
      } else await reply(Reply.REFUSED);
    }
  }

  async #receiveMessage(
    reader: ExactReader,
    from: string,
    reply: (code: number) => Promise<void>,
  ): Promise<void> {
    const head = await reader.read(8);
    const length = Number(
      new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0),
    );
    if (length > this.#maxMessage) {
      await reader.cancel(CODE_REFUSED);
      return await reply(Reply.TOO_LARGE);
    }
    const data = new Uint8Array(length);
    await reader.readInto(data);
    if (!await reader.atEnd()) {
      throw protocolError("a message ran past its length");
    }
    this.#meter.received(length);
    const queued = await this.#messages.push({ from, data }, length);
    if (queued) this.#meter.messagesReceived++;
    await reply(queued ? Reply.OK : Reply.REFUSED);
  }

  async #receiveStream(
    reader: ExactReader,
    from: string,
    reply: (code: number) => Promise<void>,
  ): Promise<void> {
    const rest = reader.rest().getReader();
    const meter = this.#meter;
    meter.streamsOpen++;
    let ended = false;
    const end = (code: number) => {
      if (ended) return;
      ended = true;
      meter.streamsOpen--;
      reply(code);
    };
    const readable = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const { value, done } = await rest.read();
          if (done) {
            controller.close();
            meter.streamsReceived++;
            end(Reply.OK);
            return;
          }
          meter.received(value.byteLength);
          controller.enqueue(value);
        } catch (err) {
          controller.error(err);
          end(Reply.REFUSED);
        }
      },
      cancel: async (reason) => {
        end(Reply.REFUSED);
        await rest.cancel(typeof reason === "number" ? reason : CODE_REFUSED);
      },
    }, { highWaterMark: 0 });
    if (!await this.#streams.push({ from, readable }, 0)) {
      await readable.cancel(CODE_REFUSED);
    }
  }

  async #receiveChunk(
    reader: ExactReader,
    from: string,
    reply: (code: number) => Promise<void>,
  ): Promise<void> {
    const head = await reader.read(CHUNK_HEADER_SIZE - 2);
    const info = parseChunkHeader(Uint8Array.of(0, 0, ...head));
    if (info.total > this.#maxMessage) {
      await reader.cancel(CODE_REFUSED);
      return await reply(Reply.TOO_LARGE);
    }
    const key = hex(info.transfer);
    let t = this.#transfers.get(key);
    if (!t) {
      if (this.#transfers.size >= MAX_TRANSFERS) {
        throw new StoqError(
          "REFUSED",
          "Too many multiplexed transfers at once",
        );
      }
      t = {
        from,
        sha256: hex(info.sha256),
        data: new Uint8Array(info.total),
        received: 0,
        offsets: new Set(),
        timer: setTimeout(
          () => this.#transfers.delete(key),
          TRANSFER_TIMEOUT_MS,
        ),
      };
      Deno.unrefTimer(t.timer);
      this.#transfers.set(key, t);
    } else if (
      t.sha256 !== hex(info.sha256) || t.data.byteLength !== info.total
    ) {
      throw protocolError(
        "chunks of one transfer disagree on its size or hash",
      );
    }
    const chunk = t.data.subarray(info.offset, info.offset + info.length);
    await reader.readInto(chunk);
    if (!await reader.atEnd()) {
      throw protocolError("a chunk ran past its length");
    }
    if (!t.offsets.has(info.offset)) {
      t.offsets.add(info.offset);
      t.received += info.length;
      this.#meter.received(info.length);
    }
    if (t.received < info.total || (info.total === 0 && t.offsets.size === 0)) {
      return await reply(Reply.OK);
    }
    // The last chunk: the whole payload must match what the sender hashed.
    this.#transfers.delete(key);
    clearTimeout(t.timer);
    if (createHash("sha256").update(t.data).digest("hex") !== t.sha256) {
      return await reply(Reply.MALFORMED);
    }
    const queued = await this.#messages.push(
      { from: t.from, data: t.data },
      t.data.byteLength,
    );
    if (queued) this.#meter.messagesReceived++;
    await reply(queued ? Reply.OK : Reply.REFUSED);
  }
}
