/**
 * The fluent way to set up a Phoenix app.
 *
 * @module
 */

import type { CongestionControl } from "../transport/mod.ts";
import type { RemoteTrustChain } from "./identity.ts";
import { Phoenix, type PhoenixOptions } from "./phoenix.ts";

/**
 * Collects {@linkcode PhoenixOptions} step by step; {@linkcode PhoenixBuilder.build} starts the
 * app (bad values are refused there, with `INVALID_ARGUMENT`).
 *
 * @example A high-performance app on a fixed port
 * ```ts
 * import { Phoenix } from "../../mod.ts";
 * const dataDir = await Deno.makeTempDir();
 * await using app = await Phoenix.builder("fast-app")
 *   .highPerformance()
 *   .maxConnections(100)
 *   .autoCertificates(true)
 *   .congestionControl("bbr")
 *   .listen({ hostname: "::1", port: 0 })
 *   .dataDir(dataDir)
 *   .build();
 * console.log(app.addr.hostname); // ::1
 * ```
 */
export class PhoenixBuilder {
  readonly #app: string;
  readonly #options: PhoenixOptions = {};

  /** Starts a builder for `app`; see {@linkcode Phoenix.builder}. */
  constructor(app: string) {
    this.#app = app;
  }

  /** msquic's max-throughput profile, large windows, BBR. */
  highPerformance(on = true): this {
    this.#options.highPerformance = on;
    return this;
  }

  /** Outgoing connections open at most; callers beyond it wait. */
  maxConnections(count: number): this {
    this.#options.maxConnections = count;
    return this;
  }

  /** Get a certificate from TrustChain on start (the default). */
  autoCertificates(on = true): this {
    this.#options.autoCertificates = on;
    return this;
  }

  /** The congestion controller. */
  congestionControl(algorithm: CongestionControl): this {
    this.#options.congestionControl = algorithm;
    return this;
  }

  /** Where to accept connections, or `false` to only connect. */
  listen(address: { hostname?: string; port?: number } | false): this {
    this.#options.listen = address;
    return this;
  }

  /** Provision from a remote TrustChain node. */
  trustChain(remote: RemoteTrustChain): this {
    this.#options.trustChain = remote;
    return this;
  }

  /** Where the per-user CA lives. */
  dataDir(dir: string): this {
    this.#options.dataDir = dir;
    return this;
  }

  /** The largest message this app accepts, in bytes. */
  maxMessageSize(bytes: number): this {
    this.#options.maxMessageSize = bytes;
    return this;
  }

  /** Milliseconds an idle pooled connection stays open. */
  idleTimeout(ms: number): this {
    this.#options.idleTimeoutMs = ms;
    return this;
  }

  /** The options collected so far (a copy). */
  options(): PhoenixOptions {
    return structuredClone(this.#options);
  }

  /** Starts the app; see {@linkcode Phoenix.create}. */
  build(): Promise<Phoenix> {
    return Phoenix.create(this.#app, this.options());
  }
}
