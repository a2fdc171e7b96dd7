/**
 * Endpoints and listeners, shaped like `Deno.QuicEndpoint` and `Deno.QuicListener`.
 *
 * @module
 */

import { Cred, Ev, type Records } from "../../ffi/mod.ts";
import { StoqError } from "../errors.ts";
import { checkPort, parseHost } from "./address.ts";
import { type PeerVerifier, StoqConnection } from "./connection.ts";
import {
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
}

/** Writes PEM material to a private temporary folder for msquic's file-based loader. */
function withPemFiles<T>(
  files: Record<string, string | undefined>,
  use: (paths: Record<string, Uint8Array<ArrayBuffer> | null>) => T,
): T {
  const dir = Deno.makeTempDirSync({ prefix: "stoq-tls-" });
  try {
    Deno.chmodSync(dir, 0o700);
    const paths: Record<string, Uint8Array<ArrayBuffer> | null> = {};
    for (const [name, pem] of Object.entries(files)) {
      if (pem === undefined) {
        paths[name] = null;
        continue;
      }
      const path = `${dir}/${name}.pem`;
      Deno.writeTextFileSync(path, pem, { mode: 0o600 });
      paths[name] = cstr(path);
    }
    return use(paths);
  } finally {
    // msquic has read the files by the time ConfigurationLoadCredential returns.
    Deno.removeSync(dir, { recursive: true });
  }
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

/**
 * A STOQ QUIC endpoint: listens and connects over IPv6.
 *
 * @example Listen and accept
 * ```ts ignore
 * import { StoqEndpoint } from "../../mod.ts";
 * await using endpoint = new StoqEndpoint({ hostname: "::1", port: 0 });
 * const listener = endpoint.listen({ alpnProtocols: ["echo"], cert, key });
 * for await (const conn of listener) {
 *   for await (const { readable, writable } of conn.incomingBidirectionalStreams) {
 *     await readable.pipeTo(writable);
 *   }
 * }
 * ```
 */
export class StoqEndpoint implements AsyncDisposable {
  readonly #runtime: Runtime;
  readonly #host: string;
  #port: number;
  readonly #connections = new Set<StoqConnection>();
  readonly #listeners = new Set<StoqListener>();
  #closing: Promise<void> | undefined;

  /**
   * Creates an endpoint. Nothing is bound until {@linkcode StoqEndpoint.listen}.
   *
   * @param options Bind address, execution profile, library path.
   * @throws {StoqError} `IPV4_REJECTED` for an IPv4 hostname, `LIBRARY_NOT_FOUND` when the
   *   shim is missing.
   */
  constructor(options: StoqEndpointOptions = {}) {
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
    this.#runtime = Runtime.acquire(profile, options.library);
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

  /** @internal */
  openConfig(
    options: StoqTransportOptions & { alpnProtocols: string[] },
    flags: number,
    pem: { cert?: string; key?: string; ca?: string },
  ): Deno.PointerObject {
    const settings = encodeSettings(options);
    const alpn = encodeAlpn(options.alpnProtocols);
    const lib = this.#runtime.lib;
    const status = new Int32Array(1);
    const cfg = lib.stoq_config_open(
      this.#runtime.rt,
      settings,
      alpn,
      alpn.length,
      status,
    );
    if (cfg === null) {
      throw statusError(status[0], "create the QUIC configuration");
    }
    try {
      const st = withPemFiles(
        { cert: pem.cert, key: pem.key, ca: pem.ca },
        (p) => lib.stoq_config_load(cfg, flags, p.cert, p.key, p.ca),
      );
      if (st !== 0) throw statusError(st, "load the TLS credentials");
    } catch (err) {
      lib.stoq_config_close(cfg);
      throw err;
    }
    return cfg;
  }

  /** @internal */
  track(conn: StoqConnection): void {
    this.#connections.add(conn);
    conn.finished.then(() => this.#connections.delete(conn));
  }

  /**
   * Starts accepting connections on this endpoint's address.
   *
   * @throws {StoqError} `INVALID_ARGUMENT` for bad certificates or ALPN, `CLOSED` after close.
   */
  listen(options: StoqListenOptions): StoqListener {
    this.#checkOpen("listen");
    const cert = checkPem(options.cert, "cert");
    const key = checkPem(options.key, "key");
    const ca = options.caCerts?.map((c, i) => checkPem(c, `caCerts[${i}]`))
      .join("\n");
    const listener = new StoqListener(this, this.#runtime, options, {
      cert,
      key,
      ca,
    });
    this.#listeners.add(listener);
    this.#port = listener.addr.port;
    return listener;
  }

  /**
   * Connects to a server. Resolves after the handshake.
   *
   * @throws {StoqError} `IPV4_REJECTED`, `HANDSHAKE_FAILED`, `CERTIFICATE_REJECTED`,
   *   `ALPN_MISMATCH`, `CONNECTION_REFUSED`, `IDLE_TIMEOUT`.
   */
  async connect(options: StoqConnectOptions): Promise<StoqConnection> {
    this.#checkOpen("connect");
    const host = parseHost(options.hostname);
    const port = checkPort(options.port, "port", false);
    const serverName = options.serverName ?? host.name;
    const ca = options.caCerts?.map((c, i) => checkPem(c, `caCerts[${i}]`))
      .join("\n");
    // Validation is always deferred to JS: OpenSSL checks the chain against caCerts, but msquic
    // never checks the server name, so the connection does. A verifyPeer without caCerts
    // replaces OpenSSL's chain check (TrustChain federations).
    const jsOnly = options.verifyPeer !== undefined && ca === undefined;
    let flags = Cred.CLIENT | Cred.DEFER_VALIDATION;
    if (jsOnly) flags |= Cred.NO_VALIDATION;
    const certificate = options.certificate;
    const cfg = this.openConfig(options, flags, {
      ca,
      cert: certificate
        ? checkPem(certificate.cert, "certificate.cert")
        : undefined,
      key: certificate
        ? checkPem(certificate.key, "certificate.key")
        : undefined,
    });
    const lib = this.#runtime.lib;
    const status = new Int32Array(1);
    const ptr = lib.stoq_conn_connect(
      this.#runtime.rt,
      cfg,
      cstr(serverName),
      host.literal ? cstr(host.literal) : null,
      port,
      status,
    );
    if (ptr === null) {
      lib.stoq_config_close(cfg);
      throw statusError(status[0], `connect to [${host.name}]:${port}`);
    }
    const conn = StoqConnection.create(
      this.#runtime,
      ptr,
      Number(lib.stoq_conn_id(ptr)),
      {
        verifyPeer: options.verifyPeer,
        serverName: jsOnly ? undefined : serverName,
        chainChecked: !jsOnly,
        ownedConfig: cfg,
      },
    );
    this.track(conn);
    await conn.handshake;
    return conn;
  }

  /** @internal */
  listenerClosed(listener: StoqListener): void {
    this.#listeners.delete(listener);
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
      await Promise.all(listeners.map((l) => l.stopped));
      const conns = [...this.#connections];
      for (const c of conns) c.close(info);
      await Promise.all(conns.map((c) => c.finished));
      for (const l of [...this.#listeners]) l.freeConfigs();
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
    };
  }
}

/**
 * Accepts connections. Iterate it, or call {@linkcode StoqListener.accept}.
 *
 * @example
 * ```ts ignore
 * const listener = endpoint.listen({ alpnProtocols: ["echo"], cert, key });
 * const conn = await listener.accept();
 * ```
 */
export class StoqListener implements AsyncIterable<StoqConnection> {
  readonly #endpoint: StoqEndpoint;
  readonly #runtime: Runtime;
  readonly #ptr: Deno.PointerObject;
  readonly #id: number;
  readonly #port: number;
  readonly #configs: Deno.PointerObject[] = [];
  readonly #options: StoqListenOptions;
  #ready: StoqConnection[] = [];
  #waiters: PromiseWithResolvers<StoqConnection>[] = [];
  #stopped = false;
  readonly #stopComplete = Promise.withResolvers<void>();

  /** @internal */
  constructor(
    endpoint: StoqEndpoint,
    runtime: Runtime,
    options: StoqListenOptions,
    pem: { cert: string; key: string; ca?: string },
  ) {
    this.#endpoint = endpoint;
    this.#runtime = runtime;
    this.#options = options;
    const cfg = this.#openConfig(pem);
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
    runtime.register(this.#id, this);
  }

  #openConfig(
    pem: { cert: string; key: string; ca?: string },
  ): Deno.PointerObject {
    let flags = 0;
    if (this.#options.requireClientCertificate) {
      flags |= Cred.REQUIRE_CLIENT_AUTH;
    }
    if (this.#options.verifyPeer) {
      flags |= Cred.DEFER_VALIDATION | Cred.NO_VALIDATION;
    }
    return this.#endpoint.openConfig(this.#options, flags, {
      cert: pem.cert,
      key: pem.key,
      ca: this.#options.verifyPeer ? undefined : pem.ca,
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
   * @throws {StoqError} `INVALID_ARGUMENT` when the PEM cannot be loaded (the old one stays).
   */
  setCertificate(certificate: StoqCertificate): void {
    if (this.#stopped) {
      throw new StoqError(
        "CLOSED",
        "Cannot set a certificate: the listener is stopped",
      );
    }
    const cfg = this.#openConfig({
      cert: checkPem(certificate.cert, "cert"),
      key: checkPem(certificate.key, "key"),
      ca: this.#options.caCerts?.join("\n"),
    });
    this.#runtime.lib.stoq_listener_set_config(this.#ptr, cfg);
    // Older configurations stay open until the listener is freed: a connection arriving on
    // another thread may still be taking the previous one.
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

  /** Resolves once the listener has stopped and every connection it took is known. */
  get stopped(): Promise<void> {
    return this.#stopComplete.promise;
  }

  /** @internal Frees the configurations once no connection can still be using them. */
  freeConfigs(): void {
    for (const cfg of this.#configs) this.#runtime.lib.stoq_config_close(cfg);
    this.#configs.length = 0;
    this.#endpoint.listenerClosed(this);
  }

  /** Yields connections as they complete their handshake, until the listener stops. */
  async *[Symbol.asyncIterator](): AsyncIterableIterator<StoqConnection> {
    while (true) {
      try {
        yield await this.accept();
      } catch (err) {
        if (err instanceof StoqError && err.code === "CLOSED") return;
        throw err;
      }
    }
  }

  /** @internal */
  onEvent(ev: Records, i: number): void {
    if (ev.type(i) === Ev.LISTENER_STOPPED) {
      this.#runtime.unregister(this.#id);
      this.#stopComplete.resolve();
      return;
    }
    if (ev.type(i) !== Ev.LISTENER_NEW_CONN) return;
    const ptr = Deno.UnsafePointer.create(BigInt(ev.field(i, 2)))!;
    const conn = StoqConnection.create(this.#runtime, ptr, ev.field(i, 1), {
      onConnected: (c) => {
        const w = this.#waiters.shift();
        if (w) w.resolve(c);
        else this.#ready.push(c);
      },
      onClosed: (c) => {
        this.#ready = this.#ready.filter((r) => r !== c);
      },
      verifyPeer: this.#options.verifyPeer,
    });
    this.#endpoint.track(conn);
    if (this.#stopped) conn.close();
  }
}
