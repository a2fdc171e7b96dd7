/**
 * Endpoints and listeners, shaped like `Deno.QuicEndpoint` and `Deno.QuicListener`.
 *
 * @module
 */

import { ConnectFlags, Cred, Ev, Events, type Records } from "../../ffi/mod.ts";
import { StoqError } from "../errors.ts";
import {
  checkConnectTarget,
  checkPort,
  formatIPv6,
  parseHost,
} from "./address.ts";
import {
  ConfigCache,
  type ConfigLease,
  openConfig,
  TicketStore,
} from "./config_cache.ts";
import { createHash } from "node:crypto";
import {
  type PeerCertificate,
  type PeerVerifier,
  StoqConnection,
} from "./connection.ts";
import {
  checkOptions,
  cstr,
  encodeAlpn,
  encodeSettings,
  type StoqTransportOptions,
} from "./options.ts";
import { type ExecutionProfile, Runtime } from "./runtime.ts";
import { statusError } from "./status.ts";

/**
 * Options for {@linkcode StoqEndpoint}.
 *
 * @example Binding to a port
 * ```ts
 * import type { StoqEndpointOptions } from "../../mod.ts";
 * const options: StoqEndpointOptions = { hostname: "::", port: 8443, profile: "max-throughput" };
 * console.log(options.port);
 * ```
 */
export interface StoqEndpointOptions {
  /**
   * IPv6 address listeners bind to. IPv4 addresses are refused with `IPV4_REJECTED`.
   * @default {"::"}
   */
  hostname?: string;
  /**
   * UDP port listeners bind to; 0 picks a free one.
   * @default {0}
   */
  port?: number;
  /**
   * msquic execution profile for this process's registration of that name.
   * @default {"low-latency"}
   */
  profile?: ExecutionProfile;
  /**
   * Path of `libstoq.so`; otherwise `$STOQ_LIB`, then `build/lib/` of this checkout.
   * @default {undefined}
   */
  library?: string;
  /**
   * UDP send segmentation offload (GSO): msquic hands the kernel a batch of packets in one
   * send. Process-wide and decided before the first socket opens: a later endpoint that asks
   * for the other setting is refused with `INVALID_ARGUMENT`. Turning it off needs STOQ's own
   * libmsquic build (msquic has no switch of its own).
   * @default {true}
   */
  gso?: boolean;
}

/** Ids for verifier functions, so that connects with the same callback share a configuration. */
const verifierIds = new WeakMap<PeerVerifier, number>();
let nextVerifierId = 1;

function verifierKey(verify: PeerVerifier | undefined): string {
  if (verify === undefined) return "";
  let id = verifierIds.get(verify);
  if (id === undefined) {
    id = nextVerifierId++;
    verifierIds.set(verify, id);
  }
  return String(id);
}

const HEX = Array.from(
  { length: 256 },
  (_, b) => b.toString(16).padStart(2, "0"),
);

function hex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}

function checkCaCerts(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot load TLS material as 'caCerts' must be a non-empty array of PEM strings: current value is ${
        Array.isArray(value) ? "[]" : typeof value
      }`,
    );
  }
  return value.map((c, i) => checkPem(c, `caCerts[${i}]`)).join("\n");
}

function checkFunction(value: unknown, param: string): void {
  if (value !== undefined && typeof value !== "function") {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot use '${param}' as it must be a function: current value is ${typeof value}`,
    );
  }
}

function checkBoolean(value: unknown, param: string): void {
  if (value !== undefined && typeof value !== "boolean") {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot use '${param}' as it must be a boolean: current value is ${
        String(value)
      }`,
    );
  }
}

function abortError(signal: AbortSignal, what: string): StoqError {
  return new StoqError(
    "ABORTED",
    `Gave up to ${what}: the signal was aborted`,
    {
      cause: signal.reason,
    },
  );
}

/**
 * A certificate chain and its private key, PEM.
 *
 * @example A certificate from the dev CA
 * ```ts
 * import { makeDevCertificates, type StoqCertificate } from "../../mod.ts";
 * const { cert, key } = await makeDevCertificates();
 * const identity: StoqCertificate = { cert, key };
 * console.log(identity.cert.startsWith("-----BEGIN CERTIFICATE-----")); // true
 * ```
 */
export interface StoqCertificate {
  /** Certificate chain in PEM, leaf first. */
  cert: string;
  /** Private key in PEM (PKCS#8 or SEC1). */
  key: string;
}

/**
 * Options for {@linkcode StoqEndpoint.listen}.
 *
 * @example Listen options
 * ```ts
 * import { makeDevCertificates, type StoqListenOptions } from "../../mod.ts";
 * const { cert, key } = await makeDevCertificates();
 * const options: StoqListenOptions = { alpnProtocols: ["my-app"], cert, key, maxConcurrentBidirectionalStreams: 1000 };
 * console.log(options.alpnProtocols);
 * ```
 */
export interface StoqListenOptions
  extends StoqTransportOptions, StoqCertificate {
  /** ALPN protocols offered to clients. */
  alpnProtocols: string[];
  /**
   * Require a client certificate (mutual TLS), validated against `caCerts` or `verifyPeer`.
   * @default {false}
   */
  requireClientCertificate?: boolean;
  /**
   * PEM certificates that client certificates must chain to.
   * @default {undefined}
   */
  caCerts?: string[];
  /**
   * Validates client certificates in JS instead of OpenSSL.
   * @default {undefined}
   */
  verifyPeer?: PeerVerifier;
  /**
   * Accept 0-RTT early data from clients that resume a session. Early data can be replayed by an
   * attacker who captured it, so turn this off unless every request that can arrive in the
   * first flight is safe to repeat (idempotent). Session resumption stays on either way.
   * @default {true}
   */
  zeroRtt?: boolean;
}

/**
 * Client connections to one server share one UDP socket (msquic's shared binding), so that
 * thousands of connections do not need thousands of descriptors and a connect does not open a
 * socket of its own (about 50 µs of a sequential connect). The share and local-address
 * parameters cost nothing: STOQ's msquic build sets them inline before the connection starts
 * (native/msquic/build.sh, edit 8).
 */
interface ServerSockets {
  /** Connections to the server open now (all on the shared socket). */
  open: number;
  /** The shared socket's address, once its first connection completed its handshake. */
  local?: { hostname: string; port: number };
}

/** The host and port a connection reaches. */
interface Target {
  literal: string;
  port: number;
  serverName: string;
}

/**
 * Options for {@linkcode StoqEndpoint.connect}.
 *
 * @example Connect options
 * ```ts
 * import type { StoqConnectOptions } from "../../mod.ts";
 * const options: StoqConnectOptions = { hostname: "::1", port: 8443, alpnProtocols: ["my-app"], caCerts: [] };
 * console.log(options.hostname);
 * ```
 */
export interface StoqConnectOptions extends StoqTransportOptions {
  /** IPv6 literal or host name (resolved to IPv6 only). */
  hostname: string;
  /** UDP port. */
  port: number;
  /** ALPN protocols offered to the server. */
  alpnProtocols: string[];
  /**
   * Name checked against the server certificate and sent as SNI.
   * @default {hostname}
   */
  serverName?: string;
  /**
   * PEM certificates the server's chain must end at; without them the system store is used.
   * @default {undefined}
   */
  caCerts?: string[];
  /**
   * Validates the server's chain in JS (for example against a TrustChain federation) instead
   * of OpenSSL.
   * @default {undefined}
   */
  verifyPeer?: PeerVerifier;
  /**
   * Client certificate for mutual TLS.
   * @default {undefined}
   */
  certificate?: StoqCertificate;
  /**
   * Resume the TLS session of an earlier connection to the same server (same name, address,
   * port and options) when the endpoint holds a ticket for it: one round trip less, and no
   * certificate to check again. `conn.resumed` tells whether it happened.
   * @default {true}
   */
  resumption?: boolean;
  /**
   * Send 0-RTT early data: when the endpoint holds a ticket for this server, `connect()`
   * resolves before the handshake and data written at once travels in the first flight
   * (`conn.earlyData` is then true; await `conn.handshake` for the server's confirmation). If
   * the server refuses early data, it is sent again after the handshake, so nothing is lost.
   * Early data can be replayed by an attacker: send only what is safe to repeat.
   * @default {false}
   */
  zeroRtt?: boolean;
  /**
   * Gives up connecting: `connect()` rejects with `ABORTED` and the attempt is closed.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

function checkPem(value: unknown, param: string): string {
  if (typeof value !== "string" || !value.includes("-----BEGIN")) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot load TLS material as '${param}' must be a PEM string: current value is ${
        typeof value === "string" ? `${value.slice(0, 20)}…` : typeof value
      }`,
    );
  }
  return value;
}

let trackConnection: (endpoint: StoqEndpoint, conn: StoqConnection) => void;
let forgetListener: (endpoint: StoqEndpoint, listener: StoqListener) => void;
let listenerStopped: (listener: StoqListener) => Promise<void>;
let freeListenerConfigs: (listener: StoqListener) => void;

/**
 * A STOQ QUIC endpoint: listens and connects over IPv6, shaped like `Deno.QuicEndpoint`.
 *
 * Connections made with the same options share one native configuration (certificates, trust
 * anchors, settings), and the endpoint keeps each server's newest session ticket, so a second
 * connect to a server resumes its TLS session.
 *
 * @example Echo over one stream
 * ```ts
 * import { makeDevCertificates, StoqEndpoint } from "../../mod.ts";
 * const { cert, key, ca } = await makeDevCertificates();
 * await using server = new StoqEndpoint({ hostname: "::1", port: 0 });
 * const listener = server.listen({ alpnProtocols: ["echo"], cert, key });
 * (async () => {
 *   for await (const conn of listener) {
 *     for await (const { readable, writable } of conn.incomingBidirectionalStreams) {
 *       readable.pipeTo(writable).catch(() => {});
 *     }
 *   }
 * })();
 *
 * await using client = new StoqEndpoint();
 * const conn = await client.connect({
 *   hostname: "::1",
 *   port: listener.addr.port,
 *   alpnProtocols: ["echo"],
 *   caCerts: [ca],
 * });
 * const { readable, writable } = await conn.createBidirectionalStream();
 * const writer = writable.getWriter();
 * await writer.write(new TextEncoder().encode("hello"));
 * await writer.close();
 * for await (const chunk of readable) console.log(new TextDecoder().decode(chunk)); // hello
 * ```
 */
export class StoqEndpoint implements AsyncDisposable {
  readonly #runtime: Runtime;
  readonly #host: string;
  #port: number;
  readonly #connections = new Set<StoqConnection>();
  readonly #listeners = new Set<StoqListener>();
  readonly #configs: ConfigCache;
  readonly #tickets = new TicketStore();
  #closing: Promise<void> | undefined;
  // Client connections to one server share a UDP socket (msquic's shared binding): its local
  // address per server, and how many live connections hold it (it goes away with the last one,
  // once that is freed).
  readonly #sockets = new Map<string, ServerSockets>();

  static {
    trackConnection = (endpoint, conn) => endpoint.#track(conn);
    forgetListener = (endpoint, listener) =>
      endpoint.#listeners.delete(listener);
  }

  /**
   * Creates an endpoint. Nothing is bound until {@linkcode StoqEndpoint.listen}.
   *
   * @param options Bind address, execution profile, library path.
   * @throws {StoqError} `IPV4_REJECTED` for an IPv4 hostname, `INVALID_ARGUMENT` for other bad
   *   options, `LIBRARY_NOT_FOUND` when the shim is missing.
   */
  constructor(options: StoqEndpointOptions = {}) {
    checkOptions(options, "create the endpoint");
    const parsed = parseHost(options.hostname ?? "::");
    if (!parsed.literal) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot bind the endpoint as 'hostname' must be an IPv6 literal: current value is ${options.hostname}`,
      );
    }
    this.#host = parsed.literal;
    this.#port = checkPort(options.port ?? 0);
    const profile = options.profile ?? "low-latency";
    if (profile !== "low-latency" && profile !== "max-throughput") {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot create the endpoint as 'profile' must be "low-latency" or "max-throughput": current value is ${profile}`,
      );
    }
    if (options.library !== undefined && typeof options.library !== "string") {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot create the endpoint as 'library' must be a path: current value is ${typeof options
          .library}`,
      );
    }
    checkBoolean(options.gso, "gso");
    this.#runtime = Runtime.acquire(profile, options.library, options.gso);
    const gso = this.#runtime.gso;
    if (options.gso !== undefined && gso !== undefined && gso !== options.gso) {
      this.#runtime.release();
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot create the endpoint with gso: ${options.gso}: GSO is process-wide and msquic already sends with it ${
          gso ? "on" : "off"
        } (set it on the process's first endpoint)`,
      );
    }
    this.#configs = new ConfigCache(this.#runtime);
  }

  /** The bound address (the port is known once a listener runs). */
  get addr(): { hostname: string; port: number; transport: "quic" } {
    return { hostname: this.#host, port: this.#port, transport: "quic" };
  }

  #checkOpen(what: string): void {
    if (this.#closing) {
      throw new StoqError("CLOSED", `Cannot ${what}: the endpoint is closed`);
    }
  }

  #track(conn: StoqConnection): void {
    this.#connections.add(conn);
    conn.finished.then(() => this.#connections.delete(conn));
  }

  /**
   * Starts accepting connections on this endpoint's address. The port belongs to this listener
   * alone: a port another listener holds (in this process or another) is refused.
   *
   * @throws {StoqError} `ADDRESS_IN_USE` when the port is taken, `INVALID_ARGUMENT` for bad
   *   certificates, ALPN or options, `CLOSED` after close.
   */
  listen(options: StoqListenOptions): StoqListener {
    checkOptions(options, "listen");
    this.#checkOpen("listen");
    const listener = new StoqListener(
      listenerToken,
      this,
      this.#runtime,
      options,
    );
    this.#listeners.add(listener);
    this.#port = listener.addr.port;
    return listener;
  }

  /**
   * Connects to a server. Resolves after the handshake (or at once for 0-RTT, see
   * {@linkcode StoqConnectOptions.zeroRtt}).
   *
   * Bad options are refused before anything opens. Host names are resolved to IPv6 only.
   *
   * @throws {StoqError} `INVALID_ARGUMENT`, `IPV4_REJECTED`, `HOST_NOT_FOUND`,
   *   `HANDSHAKE_TIMEOUT`, `HANDSHAKE_FAILED`, `CERTIFICATE_REJECTED`, `ALPN_MISMATCH`,
   *   `CONNECTION_REFUSED`, `ABORTED`, `CLOSED`.
   */
  async connect(options: StoqConnectOptions): Promise<StoqConnection> {
    checkOptions(options, "connect");
    this.#checkOpen("connect");
    const host = parseHost(options.hostname);
    const port = checkPort(options.port, "port", false);
    if (host.literal) checkConnectTarget(host.literal);
    const serverName = options.serverName ?? host.name;
    if (typeof serverName !== "string" || serverName.length === 0) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot connect as 'serverName' must be a non-empty string: current value is ${
          String(serverName)
        }`,
      );
    }
    const ca = checkCaCerts(options.caCerts);
    checkFunction(options.verifyPeer, "verifyPeer");
    for (const key of ["resumption", "zeroRtt"] as const) {
      checkBoolean(options[key], key);
    }
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot connect as 'signal' must be an AbortSignal: current value is ${typeof signal}`,
      );
    }
    const certificate = options.certificate;
    if (certificate !== undefined) {
      checkOptions(certificate, "use 'certificate'");
    }
    // Validation: the shim checks the chain against caCerts (or the system's roots) and the
    // server name; a verifyPeer without caCerts replaces that chain check (TrustChain).
    const jsOnly = options.verifyPeer !== undefined && ca === undefined;
    let flags = Cred.CLIENT | (jsOnly ? 0 : Cred.VERIFY_CHAIN);
    if (options.verifyPeer) flags |= Cred.DEFER;
    const credentials = {
      flags,
      ca,
      cert: certificate
        ? checkPem(certificate.cert, "certificate.cert")
        : undefined,
      key: certificate
        ? checkPem(certificate.key, "certificate.key")
        : undefined,
    };
    const settings = encodeSettings(options);
    const alpn = encodeAlpn(options.alpnProtocols);
    const configKey = [
      flags,
      hex(settings),
      hex(alpn),
      credentials.cert ?? "",
      credentials.key ?? "",
      ca ?? "",
      verifierKey(options.verifyPeer),
    ].join("\0");
    if (signal?.aborted) throw abortError(signal, "connect");

    const literal = host.literal ?? await this.#resolve(host.name, signal);
    this.#checkOpen("connect");
    const target = { literal, port, serverName };
    const lease = this.#configs.acquire(
      configKey,
      () => openConfig(this.#runtime, settings, alpn, credentials),
    );
    let conn: StoqConnection;
    try {
      conn = this.#start(lease, target, options);
    } catch (err) {
      this.#configs.release(lease);
      throw err;
    }
    if (conn.earlyData) return conn;
    if (!signal) {
      await conn.handshake;
      return conn;
    }
    const aborted = Promise.withResolvers<never>();
    const onAbort = () => {
      conn.abandon();
      aborted.reject(abortError(signal, "connect"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      await Promise.race([conn.handshake, aborted.promise]);
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    return conn;
  }

  /** Starts the native connection; the lease is released when it is freed. */
  #start(
    lease: ConfigLease,
    target: Target,
    options: StoqConnectOptions,
  ): StoqConnection {
    const ticketKey =
      `${lease.key}\0${target.serverName}\0[${target.literal}]:${target.port}`;
    const resume = options.resumption !== false;
    const kept = resume ? this.#tickets.get(ticketKey) : undefined;
    const ticket = kept?.ticket;
    const lib = this.#runtime.lib;
    const status = new Int32Array(1);
    // 0-RTT: the start waits for the streams the caller opens and writes right away, so that
    // their data joins the first flight (msquic sends early data with it only).
    const zeroRtt = options.zeroRtt === true && ticket !== undefined;
    const remote = `[${target.literal}]:${target.port}`;
    let socket = this.#sockets.get(remote);
    if (!socket) this.#sockets.set(remote, socket = { open: 0 });
    const local = socket.local;
    const ptr = lib.stoq_conn_connect(
      this.#runtime.rt,
      lease.ptr,
      cstr(target.serverName),
      cstr(target.literal),
      target.port,
      ticket ?? null,
      ticket?.length ?? 0,
      ConnectFlags.SHARE_BINDING |
        (zeroRtt ? ConnectFlags.DEFER_START : 0),
      local ? cstr(local.hostname) : null,
      local?.port ?? 0,
      status,
    );
    if (ptr === null) {
      throw statusError(
        status[0],
        `connect to [${target.literal}]:${target.port}`,
      );
    }
    socket.open++;
    // deno-lint-ignore prefer-const -- the ticket hook reads it once the connection exists
    let conn: StoqConnection;
    conn = StoqConnection.create(
      this.#runtime,
      ptr,
      Number(lib.stoq_conn_id(ptr)),
      {
        verifyPeer: options.verifyPeer,
        zeroRtt,
        resumedPeer: kept?.peer,
        onTicket: resume
          ? (t) =>
            this.#tickets.set(ticketKey, {
              ticket: t,
              peer: conn.peerCertificate,
            })
          : undefined,
        onClosed: () => {
          this.#configs.release(lease);
          // Freed, so no longer holding its socket: after the last sharer the shared one is
          // gone, and the next sharer starts another.
          if (--socket.open === 0) this.#sockets.delete(remote);
        },
      },
    );
    this.#track(conn);
    if (!socket.local) {
      // Read once connected, from the shim's copy (no round trip to msquic's thread).
      conn.handshake.then(() => {
        if (!socket.local && socket.open > 0) socket.local = conn.localAddr;
      }).catch(() => {/* the next sharer tries */});
    }
    return conn;
  }

  /** Resolves `name` to an IPv6 address off the JS thread. */
  async #resolve(name: string, signal?: AbortSignal): Promise<string> {
    const out = new Uint8Array(16);
    const lookup = this.#runtime.lib.stoq_resolve6(cstr(name), out);
    const result = signal
      ? await Promise.race([
        lookup,
        new Promise<never>((_, reject) =>
          signal.addEventListener(
            "abort",
            () => reject(abortError(signal, `resolve ${name}`)),
            { once: true },
          )
        ),
      ])
      : await lookup;
    if (result !== 0) {
      throw new StoqError(
        "HOST_NOT_FOUND",
        `Cannot connect to '${name}': the name has no IPv6 address (getaddrinfo error ${result}); check the spelling, the DNS or /etc/hosts entry, or connect to an IPv6 literal`,
      );
    }
    const literal = formatIPv6(out);
    checkConnectTarget(literal);
    return literal;
  }

  /**
   * Stops listeners, closes every connection with `closeCode` and waits until all native
   * objects are freed. Idempotent.
   */
  close(info: { closeCode?: number; reason?: string } = {}): Promise<void> {
    this.#closing ??= (async () => {
      const listeners = [...this.#listeners];
      for (const l of listeners) l.stop();
      // Connections the listeners accepted just before stopping arrive with these events.
      await Promise.all(listeners.map((l) => listenerStopped(l)));
      const conns = [...this.#connections];
      for (const c of conns) c.close(info);
      await Promise.all(conns.map((c) => c.finished));
      for (const l of [...this.#listeners]) freeListenerConfigs(l);
      this.#configs.close();
      this.#tickets.clear();
      await this.#runtime.release();
    })();
    return this.#closing;
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Counts of live native objects in this process's runtime (for leak checks). */
  nativeCounts(): Record<string, number> {
    const c = this.#runtime.counts();
    return {
      configs: c[0],
      listeners: c[1],
      connections: c[2],
      streams: c[3],
      sendBuffers: c[4],
      datagramBuffers: c[5],
      receiveBuffers: c[6],
      sendsAllocated: c[7],
      sendsFreed: c[8],
      wakeups: c[9],
      events: c[10],
      poolSlabs: c[11],
      poolSlotsInUse: this.#runtime.pool.inUse,
      fileTransfers: c[12],
      datagramsQueued: c[13],
    };
  }
}

const listenerToken = Symbol("stoq.listener");

/** Client certificates a listener remembers for resumed sessions. */
const MAX_REMEMBERED_PEERS = 10_000;

/**
 * Accepts connections that completed their handshake. Iterate it, or call
 * {@linkcode StoqListener.accept}.
 *
 * @example Accepting one connection
 * ```ts
 * import { makeDevCertificates, StoqEndpoint } from "../../mod.ts";
 * const { cert, key, ca } = await makeDevCertificates();
 * await using server = new StoqEndpoint({ hostname: "::1", port: 0 });
 * const listener = server.listen({ alpnProtocols: ["demo"], cert, key });
 * await using client = new StoqEndpoint();
 * const accepted = listener.accept();
 * await client.connect({ hostname: "::1", port: listener.addr.port, alpnProtocols: ["demo"], caCerts: [ca] });
 * const conn = await accepted;
 * console.log(conn.remoteAddr.hostname); // ::1
 * ```
 */
export class StoqListener implements AsyncIterable<StoqConnection> {
  readonly #endpoint: StoqEndpoint;
  readonly #runtime: Runtime;
  readonly #ptr: Deno.PointerObject;
  readonly #id: number;
  readonly #port: number;
  readonly #configs: Deno.PointerObject[] = [];
  #options: StoqListenOptions;
  #settings: Uint8Array<ArrayBuffer>;
  #certificate: StoqCertificate;
  readonly #alpn: Uint8Array<ArrayBuffer>;
  #ready: StoqConnection[] = [];
  #waiters: PromiseWithResolvers<StoqConnection>[] = [];
  // Client certificates verifyPeer accepted, by SHA-256, for the sessions clients resume.
  readonly #verified = new Map<string, PeerCertificate>();
  #stopped = false;
  readonly #stopComplete = Promise.withResolvers<void>();

  static {
    listenerStopped = (listener) => listener.#stopComplete.promise;
    freeListenerConfigs = (listener) => listener.#freeConfigs();
  }

  /** Made by {@linkcode StoqEndpoint.listen}; not for users. */
  constructor(
    token: typeof listenerToken,
    endpoint: StoqEndpoint,
    runtime: Runtime,
    options: StoqListenOptions,
  ) {
    if (token !== listenerToken) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        "Cannot construct a StoqListener: use StoqEndpoint.listen()",
      );
    }
    const cert = checkPem(options.cert, "cert");
    const key = checkPem(options.key, "key");
    checkCaCerts(options.caCerts);
    checkFunction(options.verifyPeer, "verifyPeer");
    checkBoolean(options.requireClientCertificate, "requireClientCertificate");
    checkBoolean(options.zeroRtt, "zeroRtt");
    this.#endpoint = endpoint;
    this.#runtime = runtime;
    this.#options = options;
    this.#settings = encodeSettings(options, {
      resumption: options.zeroRtt === false ? 1 : 2,
    });
    this.#alpn = encodeAlpn(options.alpnProtocols);
    this.#certificate = { cert, key };
    const cfg = this.#openConfig(cert, key);
    const status = new Int32Array(1);
    const ptr = runtime.lib.stoq_listener_open(
      runtime.rt,
      cfg,
      cstr(endpoint.addr.hostname),
      endpoint.addr.port,
      1,
      status,
    );
    if (ptr === null) {
      runtime.lib.stoq_config_close(cfg);
      throw statusError(
        status[0],
        `listen on [${endpoint.addr.hostname}]:${endpoint.addr.port}`,
      );
    }
    this.#ptr = ptr;
    this.#configs.push(cfg);
    this.#id = Number(runtime.lib.stoq_listener_id(ptr));
    this.#port = runtime.lib.stoq_listener_port(ptr);
    runtime.register(this.#id, (ev, i) => this.#onEvent(ev, i));
  }

  #openConfig(cert: string, key: string): Deno.PointerObject {
    const o = this.#options;
    let flags = 0;
    if (o.requireClientCertificate) flags |= Cred.REQUIRE_CLIENT_AUTH;
    // A verifyPeer replaces the chain check (TrustChain federations); otherwise a required
    // client certificate is checked against caCerts, or the system's roots.
    if (o.verifyPeer) flags |= Cred.DEFER;
    else if (o.requireClientCertificate) flags |= Cred.VERIFY_CHAIN;
    return openConfig(this.#runtime, this.#settings, this.#alpn, {
      flags,
      cert,
      key,
      ca: o.verifyPeer ? undefined : checkCaCerts(o.caCerts),
    });
  }

  /** The bound address. */
  get addr(): { hostname: string; port: number; transport: "quic" } {
    return {
      hostname: this.#endpoint.addr.hostname,
      port: this.#port,
      transport: "quic",
    };
  }

  /**
   * Serves new connections with another certificate; live connections keep theirs.
   *
   * @throws {StoqError} `INVALID_ARGUMENT` when the PEM cannot be loaded (the old one stays),
   *   `CLOSED` once stopped.
   */
  setCertificate(certificate: StoqCertificate): void {
    checkOptions(certificate, "set a certificate");
    if (this.#stopped) {
      throw new StoqError(
        "CLOSED",
        "Cannot set a certificate: the listener is stopped",
      );
    }
    const next = {
      cert: checkPem(certificate.cert, "cert"),
      key: checkPem(certificate.key, "key"),
    };
    this.#useConfig(this.#openConfig(next.cert, next.key));
    this.#certificate = next;
  }

  /**
   * Serves new connections with other transport settings (windows, stream limits, idle timeout,
   * congestion control, datagrams); live connections keep theirs. Settings not given keep the
   * values the listener was started with.
   *
   * @throws {StoqError} `INVALID_ARGUMENT` for a bad setting (nothing changes), `CLOSED` once
   *   stopped.
   */
  setTransportOptions(options: StoqTransportOptions): void {
    checkOptions(options, "set transport options");
    if (this.#stopped) {
      throw new StoqError(
        "CLOSED",
        "Cannot set transport options: the listener is stopped",
      );
    }
    const merged = { ...this.#options, ...options };
    const settings = encodeSettings(merged, {
      resumption: merged.zeroRtt === false ? 1 : 2,
    });
    const previous = { options: this.#options, settings: this.#settings };
    this.#options = merged;
    this.#settings = settings;
    try {
      this.#useConfig(
        this.#openConfig(this.#certificate.cert, this.#certificate.key),
      );
    } catch (err) {
      this.#options = previous.options;
      this.#settings = previous.settings;
      throw err;
    }
  }

  #useConfig(cfg: Deno.PointerObject): void {
    this.#runtime.lib.stoq_listener_set_config(this.#ptr, cfg);
    // Older configurations stay open until the listener is freed: connections made with them
    // (and one arriving on another thread right now) still use them.
    this.#configs.push(cfg);
  }

  /** Waits for the next connection that completed its handshake. */
  accept(): Promise<StoqConnection> {
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready);
    if (this.#stopped) {
      return Promise.reject(
        new StoqError("CLOSED", "Cannot accept: the listener is stopped"),
      );
    }
    const w = Promise.withResolvers<StoqConnection>();
    this.#waiters.push(w);
    return w.promise;
  }

  /** Stops accepting. Live connections stay open. Idempotent. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    // Blocks until msquic stops the listener; its STOPPED record follows any last NEW_CONN.
    this.#runtime.lib.stoq_listener_close(this.#ptr);
    for (const w of this.#waiters) {
      w.reject(new StoqError("CLOSED", "The listener was stopped"));
    }
    this.#waiters = [];
  }

  /** Frees the configurations once no connection can still be using them. */
  #freeConfigs(): void {
    for (const cfg of this.#configs) this.#runtime.lib.stoq_config_close(cfg);
    this.#configs.length = 0;
    forgetListener(this.#endpoint, this);
  }

  /**
   * Yields connections as they complete their handshake, until the listener stops. The
   * iterator keeps no reference to a connection it has yielded. (A `for await` loop's own frame
   * holds its last value until the next connection arrives; a closed connection holds nothing
   * it buffered by then, only a small object.)
   */
  [Symbol.asyncIterator](): AsyncIterator<StoqConnection> {
    const done = { value: undefined, done: true } as const;
    return {
      next: () =>
        this.accept().then(
          (value) => ({ value, done: false }),
          (err) => {
            if (err instanceof StoqError && err.code === "CLOSED") return done;
            throw err;
          },
        ),
      return: () => Promise.resolve(done),
    };
  }

  #onEvent(ev: Records, i: number): void {
    if (ev.type(i) === Ev.LISTENER_STOPPED) {
      this.#runtime.unregister(this.#id);
      this.#stopComplete.resolve();
      return;
    }
    if (ev.type(i) !== Ev.LISTENER_NEW_CONN) return;
    const conn = StoqConnection.create(
      this.#runtime,
      Events.NewConnection.handle(ev, i)!,
      Events.NewConnection.connectionId(ev, i),
      {
        onConnected: (c) => {
          const w = this.#waiters.shift();
          if (w) w.resolve(c);
          else this.#ready.push(c);
        },
        onClosed: (c) => {
          this.#ready = this.#ready.filter((r) => r !== c);
        },
        verifyPeer: this.#options.verifyPeer,
        onPeerVerified: (peer) => {
          const hash = createHash("sha256").update(peer.leaf).digest("hex");
          this.#verified.delete(hash);
          this.#verified.set(hash, peer);
          if (this.#verified.size > MAX_REMEMBERED_PEERS) {
            this.#verified.delete(this.#verified.keys().next().value!);
          }
        },
        onResumed: (hash) => this.#verified.get(hash),
      },
    );
    trackConnection(this.#endpoint, conn);
    if (this.#stopped) conn.close();
  }
}
