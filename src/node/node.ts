/**
 * The STOQ node: one QUIC listener whose connections go to a service by ALPN (echo, sink, the
 * TrustChain CA), its own CA created on first start and kept, its certificate issued by that CA
 * and renewed before it expires, `max_connections` enforced, reloads that apply what can change
 * live, metrics and a dashboard over HTTP, JSON logs, and a graceful shutdown.
 *
 * @module
 */

import { StoqError } from "../errors.ts";
import { parseListenAddr } from "../phoenix/config.ts";
import { provisionNames } from "../phoenix/identity.ts";
import {
  type StoqAddr,
  type StoqConnection,
  StoqEndpoint,
  type StoqListener,
} from "../transport/mod.ts";
import {
  CertificateAuthority,
  CertificateRotator,
  Federation,
  openCaStore,
  type ProvisionedIdentity,
  type SignedTrustBundle,
  TRUSTCHAIN_ALPN,
  TrustChainHandler,
} from "../trustchain/mod.ts";
import {
  type ConfigChanges,
  configChanges,
  dataDirOf,
  keyError,
  type LoadedConfig,
  transportOptions,
} from "./config/load.ts";
import { ECHO_ALPN, type NodeConfig, SINK_ALPN } from "./config/schema.ts";
import { type LineWriter, NodeLog } from "./log.ts";
import { NodeMetrics } from "./metrics.ts";
import { type Monitor, startMonitor } from "./monitor.ts";
import { serveEcho, serveSink, type StreamTracker } from "./services.ts";

/** The node's version, as `stoq_node_info` reports it. */
export const NODE_VERSION = "0.1.0";

/**
 * Application close codes the node sends.
 *
 * | code   | name       | when                                                        |
 * | ------ | ---------- | ----------------------------------------------------------- |
 * | `0x10` | `BUSY`     | the node holds `max_connections`: this one was refused      |
 * | `0x11` | `SHUTDOWN` | the node is shutting down                                   |
 *
 * A stream refused during a shutdown is reset with `0x12` (`STREAM_REFUSED_SHUTDOWN`).
 */
export const NODE_CLOSE_CODES = { BUSY: 0x10, SHUTDOWN: 0x11 } as const;

/** One connection the node serves. */
interface Served {
  id: number;
  conn: StoqConnection;
  service: string;
  streams: number;
  opened: number;
}

function codeOf(err: unknown): string {
  return err instanceof StoqError ? err.code : "UNKNOWN";
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A `CONFIG_INVALID` error for a key whose file or directory `path` cannot be used. */
function pathError(
  loaded: LoadedConfig,
  section: string,
  key: string,
  path: string,
  why: string,
  cause?: unknown,
): StoqError {
  return keyError(
    loaded,
    section,
    key,
    `is ${JSON.stringify(path)}, ${why}${
      cause === undefined ? "" : ` (${messageOf(cause)})`
    }`,
  );
}

/** Options for {@linkcode StoqNode.start}. */
export interface StoqNodeOptions {
  /**
   * Where log lines go.
   * @default {console.log}
   */
  write?: LineWriter;
}

/** A running node. */
export class StoqNode implements AsyncDisposable {
  #loaded: LoadedConfig;
  readonly #log: NodeLog;
  readonly #metrics: NodeMetrics;
  readonly #ca: CertificateAuthority;
  readonly #endpoint: StoqEndpoint;
  readonly #listener: StoqListener;
  readonly #trustchain: TrustChainHandler;
  readonly #dataDir: string;
  #identity: ProvisionedIdentity;
  #rotator: CertificateRotator | undefined;
  #monitor: Monitor | undefined;
  #bundle: SignedTrustBundle;
  #tokens: Set<string>;
  readonly #served = new Map<StoqConnection, Served>();
  #nextId = 1;
  #streams = 0;
  #draining = false;
  #idle: PromiseWithResolvers<void> | undefined;
  readonly #started = performance.now();
  #accepting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  /** The reload in progress (reloads run one at a time; a shutdown waits for it). */
  #reloading: Promise<unknown> = Promise.resolve();
  readonly #done = Promise.withResolvers<void>();

  private constructor(parts: {
    loaded: LoadedConfig;
    log: NodeLog;
    ca: CertificateAuthority;
    endpoint: StoqEndpoint;
    listener: StoqListener;
    identity: ProvisionedIdentity;
    bundle: SignedTrustBundle;
    tokens: Set<string>;
    dataDir: string;
  }) {
    this.#loaded = parts.loaded;
    this.#log = parts.log;
    this.#ca = parts.ca;
    this.#endpoint = parts.endpoint;
    this.#listener = parts.listener;
    this.#identity = parts.identity;
    this.#bundle = parts.bundle;
    this.#tokens = parts.tokens;
    this.#dataDir = parts.dataDir;
    this.#metrics = new NodeMetrics({
      connections: () => this.#served.size,
      streams: () => this.#streams,
      logEntries: () => this.#ca.treeSize,
      certificateExpiry: () => ({
        node: this.#identity.notAfter.getTime() / 1000,
        root: this.#ca.rootNotAfter.getTime() / 1000,
      }),
    }, { ca: parts.ca.name, version: NODE_VERSION });
    this.#trustchain = new TrustChainHandler({
      ca: parts.ca,
      trustBundle: () => this.#bundle,
      authorize: ({ names, token, remote }) => {
        const ok = this.config.trustchain.open_enrollment ||
          (token !== undefined && this.#tokens.has(token));
        this.#log.info("trustchain.issue", {
          names,
          peer: `[${remote.hostname}]:${remote.port}`,
          authorized: ok,
        });
        return ok;
      },
    });
  }

  /**
   * Starts a node: opens (or creates) its CA, writes `root.pem`, `member.json` and the bundle to
   * the data directory, provisions its certificate, listens, and starts the HTTP monitor.
   *
   * @param loaded The configuration.
   * @param options Where log lines go.
   * @returns The running node.
   * @throws {StoqError} `CONFIG_INVALID` naming the key whose value cannot be used,
   *   `ADDRESS_IN_USE`, the CA's open errors (`CA_LOCKED`, `CA_TAMPERED`, `STORE_ERROR`, …).
   */
  static async start(
    loaded: LoadedConfig,
    options: StoqNodeOptions = {},
  ): Promise<StoqNode> {
    const config = loaded.config;
    const log = new NodeLog({
      level: config.log.level,
      format: config.log.format,
      write: options.write,
    });
    const dataDir = dataDirOf(config);
    try {
      await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
    } catch (cause) {
      throw pathError(
        loaded,
        "node",
        "data_dir",
        dataDir,
        "which cannot be created",
        cause,
      );
    }
    const tc = config.trustchain;
    const storeUrl = tc.store ?? `sqlite:${dataDir}/ca.db`;
    let store;
    try {
      store = await openCaStore(storeUrl);
    } catch (err) {
      if (codeOf(err) !== "INVALID_ARGUMENT") throw err;
      throw keyError(loaded, "trustchain", "store", messageOf(err));
    }
    let ca: CertificateAuthority;
    try {
      if (tc.key_file !== undefined) {
        await Deno.stat(tc.key_file).catch((cause) => {
          throw pathError(
            loaded,
            "trustchain",
            "key_file",
            tc.key_file!,
            "which cannot be read",
            cause,
          );
        });
      }
      ca = await CertificateAuthority.open({
        name: tc.name,
        store,
        domain: tc.domain,
        allowedNames: [`*.${tc.domain}`, "localhost", ...tc.server_names],
        ...(tc.key_file !== undefined ? { keyFile: tc.key_file } : {}),
      });
    } catch (err) {
      // A CA that did not open does not own the store (ca.close() would close it).
      await store.close?.();
      throw err;
    }
    let endpoint: StoqEndpoint | undefined;
    try {
      await Deno.writeTextFile(`${dataDir}/root.pem`, ca.rootPem);
      await Deno.writeTextFile(
        `${dataDir}/member.json`,
        JSON.stringify(ca.member, null, 2) + "\n",
      );
      const bundle = await StoqNode.#loadBundle(loaded, ca, dataDir);
      const tokens = await StoqNode.#loadTokens(loaded);
      const identity = await StoqNode.#provision(ca, config);
      const { hostname, port } = parseListenAddr(config.network.listen_addr);
      endpoint = new StoqEndpoint({
        hostname,
        port,
        profile: config.network.quic_config === "high_performance"
          ? "max-throughput"
          : "low-latency",
      });
      const listener = endpoint.listen({
        alpnProtocols: config.network.alpn,
        cert: identity.cert,
        key: identity.key,
        ...transportOptions(config),
      });
      const node = new StoqNode({
        loaded,
        log,
        ca,
        endpoint,
        listener,
        identity,
        bundle,
        tokens,
        dataDir,
      });
      await node.#begin();
      return node;
    } catch (err) {
      await endpoint?.close();
      await ca.close();
      throw err;
    }
  }

  /** The names of the node's certificate. */
  static #names(config: NodeConfig): string[] {
    const d = config.trustchain.domain;
    return [
      ...new Set([
        `node.${d}`,
        `trustchain.${d}`,
        "localhost",
        ...config.trustchain.server_names,
      ]),
    ];
  }

  static #provision(
    ca: CertificateAuthority,
    config: NodeConfig,
  ): Promise<ProvisionedIdentity> {
    return provisionNames(
      ca,
      StoqNode.#names(config),
      config.trustchain.certificate_lifetime_ms,
    );
  }

  /** The federation bundle from `[trustchain] federation_bundle`, else this CA alone. */
  static async #loadBundle(
    loaded: LoadedConfig,
    ca: CertificateAuthority,
    dataDir: string,
  ): Promise<SignedTrustBundle> {
    const file = loaded.config.trustchain.federation_bundle;
    if (file === undefined) {
      const bundle = { version: 1, members: [ca.member] };
      const signed = { bundle, signatures: [await ca.endorse(bundle)] };
      await Deno.writeTextFile(
        `${dataDir}/bundle.json`,
        JSON.stringify(signed, null, 2) + "\n",
      );
      return signed;
    }
    const bad = (why: string, cause?: unknown) =>
      pathError(loaded, "trustchain", "federation_bundle", file, why, cause);
    let signed: SignedTrustBundle;
    try {
      signed = JSON.parse(await Deno.readTextFile(file));
    } catch (cause) {
      throw bad("which cannot be read as JSON", cause);
    }
    try {
      await Federation.create(signed);
    } catch (cause) {
      throw bad("which is not a valid signed trust bundle", cause);
    }
    const me = ca.member;
    if (
      !signed.bundle.members.some((m) =>
        m.name === me.name && m.root === me.root
      )
    ) {
      throw bad(`which does not list this node's CA ${me.name}`);
    }
    return signed;
  }

  /** The enrollment tokens from `[trustchain] enrollment_tokens_file`. */
  static async #loadTokens(loaded: LoadedConfig): Promise<Set<string>> {
    const file = loaded.config.trustchain.enrollment_tokens_file;
    if (file === undefined) return new Set();
    try {
      return new Set(
        (await Deno.readTextFile(file)).split("\n").map((l) => l.trim())
          .filter((l) => l.length > 0 && !l.startsWith("#")),
      );
    } catch (cause) {
      throw pathError(
        loaded,
        "trustchain",
        "enrollment_tokens_file",
        file,
        "which cannot be read",
        cause,
      );
    }
  }

  async #begin(): Promise<void> {
    const config = this.config;
    await this.#startRotation();
    if (config.metrics.enabled) {
      this.#monitor = await startMonitor(
        parseListenAddr(config.metrics.listen_addr),
        {
          registry: this.#metrics.registry,
          series: () => this.#metrics.series(),
          status: () => ({
            listen: `[${this.addr.hostname}]:${this.addr.port}`,
            ca: this.#ca.name,
            uptimeSeconds: (performance.now() - this.#started) / 1000,
            maxConnections: this.config.network.max_connections,
            draining: this.#draining,
          }),
          draining: () => this.#draining,
          ca: this.#ca,
        },
      ).catch((err) => {
        // A taken port ends the start: nothing may keep running.
        this.#rotator?.close();
        throw err;
      });
    }
    this.#metrics.start();
    this.#accepting = this.#acceptLoop();
    this.#log.info("node.started", {
      listen: `[${this.addr.hostname}]:${this.addr.port}`,
      port: this.addr.port,
      alpn: config.network.alpn,
      metrics: this.#monitor
        ? `http://[${this.#monitor.addr.hostname}]:${this.#monitor.addr.port}/`
        : null,
      metrics_port: this.#monitor?.addr.port ?? null,
      ca: this.#ca.name,
      root_sha256: this.#ca.rootFingerprint,
      root_file: `${this.#dataDir}/root.pem`,
      server_names: this.#identity.names,
      certificate_serial: this.#identity.serial,
      certificate_not_after: this.#identity.notAfter.toISOString(),
      max_connections: config.network.max_connections,
    });
  }

  async #startRotation(): Promise<void> {
    this.#rotator?.close();
    this.#rotator = undefined;
    const tc = this.config.trustchain;
    if (!tc.rotation) return;
    this.#rotator = new CertificateRotator({
      provision: () => StoqNode.#provision(this.#ca, this.config),
      current: this.#identity,
      renewAt: tc.renew_at,
      onRenew: (identity) => this.#useIdentity(identity),
      onError: (err) => {
        this.#metrics.error(codeOf(err));
        this.#log.error("certificate.renew_failed", {
          code: codeOf(err),
          message: messageOf(err),
        });
      },
    });
    await this.#rotator.start();
  }

  #useIdentity(identity: ProvisionedIdentity): void {
    if (identity === this.#identity) return;
    this.#listener.setCertificate({ cert: identity.cert, key: identity.key });
    this.#identity = identity;
    this.#log.info("certificate.renewed", {
      serial: identity.serial,
      names: identity.names,
      not_after: identity.notAfter.toISOString(),
    });
  }

  /** The running configuration. */
  get config(): NodeConfig {
    return this.#loaded.config;
  }

  /** The QUIC address the services listen on. */
  get addr(): StoqAddr {
    return this.#listener.addr;
  }

  /** Resolves once the node has stopped. */
  get done(): Promise<void> {
    return this.#done.promise;
  }

  async #acceptLoop(): Promise<void> {
    try {
      for await (const conn of this.#listener) this.#accept(conn);
    } catch (err) {
      this.#log.error("node.accept_failed", {
        code: codeOf(err),
        message: messageOf(err),
      });
    }
  }

  #accept(conn: StoqConnection): void {
    const id = this.#nextId++;
    const remote = conn.remoteAddr;
    const peer = `[${remote.hostname}]:${remote.port}`;
    const service = conn.protocol ?? "";
    if (this.#draining) {
      conn.close({ closeCode: NODE_CLOSE_CODES.SHUTDOWN, reason: "shutdown" });
      return;
    }
    const max = this.config.network.max_connections;
    if (this.#served.size >= max) {
      this.#metrics.refused("max_connections");
      this.#log.info("connection.refused", {
        conn: id,
        peer,
        alpn: service,
        reason: `max_connections (${max}) reached`,
        close_code: NODE_CLOSE_CODES.BUSY,
      });
      conn.close({
        closeCode: NODE_CLOSE_CODES.BUSY,
        reason: "max_connections",
      });
      return;
    }
    let handshakeMs = 0;
    try {
      handshakeMs = conn.stats().handshakeMs;
    } catch {
      // Closed already: the close event follows.
    }
    this.#metrics.accepted(service, handshakeMs);
    const served: Served = {
      id,
      conn,
      service,
      streams: 0,
      opened: performance.now(),
    };
    this.#served.set(conn, served);
    this.#log.info("connection.open", {
      conn: id,
      peer,
      alpn: service,
      handshake_ms: handshakeMs,
      resumed: conn.resumed,
    });
    const tracker = this.#tracker(served);
    if (service === ECHO_ALPN) serveEcho(conn, tracker);
    else if (service === SINK_ALPN) serveSink(conn, tracker);
    else if (service === TRUSTCHAIN_ALPN) this.#trustchain.serve(conn);
    conn.closed.then(
      (info) => ({
        reason: info.reason ||
          (info.closeCode === 0
            ? "closed by the peer"
            : `closed by the peer with code ${info.closeCode}`),
        code: undefined as string | undefined,
        closeCode: info.closeCode,
      }),
      (err) => ({
        reason: messageOf(err),
        code: codeOf(err),
        closeCode: undefined as number | undefined,
      }),
    ).then((end) => {
      this.#served.delete(conn);
      if (end.code !== undefined) this.#metrics.error(end.code);
      this.#log.info("connection.close", {
        conn: id,
        peer,
        alpn: service,
        reason: end.reason,
        ...(end.code !== undefined ? { code: end.code } : {}),
        ...(end.closeCode !== undefined ? { close_code: end.closeCode } : {}),
        duration_ms: Math.round(performance.now() - served.opened),
      });
    });
  }

  #tracker(served: Served): StreamTracker {
    return {
      begin: () => {
        if (this.#draining) return false;
        served.streams++;
        this.#streams++;
        this.#metrics.stream(served.service);
        return true;
      },
      end: () => {
        served.streams--;
        this.#streams--;
        if (!this.#draining) return;
        if (served.streams === 0) {
          served.conn.close({
            closeCode: NODE_CLOSE_CODES.SHUTDOWN,
            reason: "shutdown",
          });
        }
        if (this.#streams === 0) this.#idle?.resolve();
      },
      bytes: (received, sent) => {
        this.#metrics.bytesReceived += received;
        this.#metrics.bytesSent += sent;
      },
      error: (err) => {
        this.#metrics.error(codeOf(err));
        this.#log.debug("stream.error", {
          conn: served.id,
          code: codeOf(err),
          message: messageOf(err),
        });
      },
    };
  }

  /**
   * Applies a new configuration: what can change live changes now (limits, log level and
   * format, settings of new connections, certificate lifetime and rotation, bundle and tokens);
   * the rest is reported as needing a restart and keeps its running value. Live connections are
   * never dropped. When anything in the new configuration cannot be used, nothing changes.
   *
   * @param loaded The new configuration (or its loading: its failure is logged the same way).
   * @returns What changed.
   * @throws {StoqError} `CONFIG_INVALID` naming the key (the running configuration stays).
   */
  reload(
    loaded: LoadedConfig | Promise<LoadedConfig>,
  ): Promise<ConfigChanges> {
    // A file that fails to load while an earlier reload runs is reported in its turn, not as
    // an unhandled rejection now.
    if (loaded instanceof Promise) loaded.catch(() => {});
    const run = this.#reloading.then(() => this.#reload(loaded));
    this.#reloading = run.catch(() => {/* reported by #reload */});
    return run;
  }

  async #reload(
    loaded: LoadedConfig | Promise<LoadedConfig>,
  ): Promise<ConfigChanges> {
    let path: string | undefined;
    try {
      this.#checkNotDraining();
      const next = await loaded;
      path = next.path;
      const changes = await this.#apply(next);
      this.#metrics.reloaded(true);
      this.#log.info("config.reloaded", {
        file: path ?? null,
        applied: changes.live,
        restart_required: changes.restart,
      });
      return changes;
    } catch (err) {
      this.#metrics.reloaded(false);
      this.#metrics.error(codeOf(err));
      this.#log.error("config.reload_failed", {
        file: path ?? null,
        code: codeOf(err),
        message: messageOf(err),
      });
      throw err;
    }
  }

  #checkNotDraining(): void {
    if (this.#draining) {
      throw new StoqError("CLOSED", "Cannot reload: the node is shutting down");
    }
  }

  async #apply(loaded: LoadedConfig): Promise<ConfigChanges> {
    const before = this.config;
    const changes = configChanges(before, loaded.config);
    // Keys that need a restart keep their running values.
    const next = structuredClone(loaded.config);
    for (const key of changes.restart) {
      const [section, name] = key.split(".");
      (next as unknown as Record<string, Record<string, unknown>>)[section][
        name
      ] = (before as unknown as Record<string, Record<string, unknown>>)[
        section
      ][name];
    }
    const effective: LoadedConfig = { ...loaded, config: next };
    // Everything that can fail is read before anything changes.
    const bundle = await StoqNode.#loadBundle(
      effective,
      this.#ca,
      this.#dataDir,
    );
    const tokens = await StoqNode.#loadTokens(effective);
    // A shutdown that began meanwhile wins: nothing changes.
    this.#checkNotDraining();
    const transportChanged = changes.live.some((k) =>
      k.startsWith("network.") && k !== "network.max_connections"
    );
    if (transportChanged) {
      this.#listener.setTransportOptions(transportOptions(next));
    }
    this.#loaded = effective;
    this.#bundle = bundle;
    this.#tokens = tokens;
    this.#log.configure(next.log.level, next.log.format);
    const tc = changes.live.filter((k) => k.startsWith("trustchain."));
    if (tc.includes("trustchain.certificate_lifetime_ms")) {
      this.#useIdentity(await StoqNode.#provision(this.#ca, next));
    }
    if (
      tc.includes("trustchain.certificate_lifetime_ms") ||
      tc.includes("trustchain.rotation") || tc.includes("trustchain.renew_at")
    ) {
      await this.#startRotation();
    }
    return changes;
  }

  /**
   * Shuts down gracefully: stops accepting, refuses new streams, lets open streams finish for up
   * to `[node] shutdown_deadline_ms`, then closes every connection (close code `0x11`), the
   * monitor and the CA. Idempotent.
   *
   * @param why What asked for it (e.g. the signal), for the log.
   * @returns Resolves once everything is closed.
   */
  shutdown(why = "requested"): Promise<void> {
    this.#closing ??= this.#shutdown(why);
    return this.#closing;
  }

  async #shutdown(why: string): Promise<void> {
    const deadline = this.config.node.shutdown_deadline_ms;
    this.#draining = true;
    this.#log.info("node.draining", {
      reason: why,
      connections: this.#served.size,
      streams: this.#streams,
      deadline_ms: deadline,
    });
    // A reload in progress finishes (or gives up) first, so none starts a rotation after this.
    await this.#reloading;
    this.#rotator?.close();
    this.#listener.stop();
    await this.#accepting;
    for (const s of this.#served.values()) {
      if (s.service !== TRUSTCHAIN_ALPN && s.streams === 0) {
        s.conn.close({
          closeCode: NODE_CLOSE_CODES.SHUTDOWN,
          reason: "shutdown",
        });
      }
    }
    this.#idle = Promise.withResolvers<void>();
    if (this.#streams === 0) this.#idle.resolve();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), deadline);
    });
    const finished = await Promise.race([
      Promise.all([this.#idle.promise, this.#trustchain.close()]).then(() =>
        false
      ),
      expired,
    ]);
    clearTimeout(timer);
    if (finished) {
      this.#log.warn("node.deadline_reached", {
        streams: this.#streams,
        connections: this.#served.size,
      });
    }
    await this.#endpoint.close({
      closeCode: NODE_CLOSE_CODES.SHUTDOWN,
      reason: "shutdown",
    });
    await this.#trustchain.close();
    this.#metrics.stop();
    await this.#monitor?.close();
    await this.#ca.close();
    this.#log.info("node.stopped", {
      uptime_s: Math.round((performance.now() - this.#started) / 1000),
    });
    this.#done.resolve();
  }

  /** Same as {@linkcode StoqNode.shutdown}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
