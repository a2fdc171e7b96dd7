/**
 * The TrustChain CA service over STOQ (protocol `trustchain/1`, see `protocol.ts`).
 *
 * Trust: clients pin the CA roots they were given and the service's name — the bootstrap for
 * reaching the CA that issues everything else. Issuance needs the service's `authorize` hook to
 * agree (e.g. an enrollment token); it is refused otherwise.
 *
 * @module
 */

import type {
  StoqAddr,
  StoqBidirectionalStream,
  StoqConnection,
  StoqEndpoint,
  StoqTransportOptions,
} from "../../transport/mod.ts";
import { StoqError } from "../../errors.ts";
import type { CertificateAuthority, ProvisionedIdentity } from "../ca.ts";
import type { SignedTrustBundle } from "../core/federation.ts";
import {
  type IdentityListener,
  type IdentityRotationOptions,
  listenWithIdentity,
} from "../binding.ts";
import {
  decodeRequest,
  DEFAULT_MAX_REQUEST,
  encodeError,
  encodeResult,
  type Method,
  type Params,
  parseRequest,
  readAll,
  type Results,
  TRUSTCHAIN_ALPN,
  writeAll,
} from "./protocol.ts";
import { fromBase64, toBase64 } from "../core/_bytes.ts";

/** What the service's `authorize` hook sees of an issuance request. */
export interface IssueRequest {
  /** The DNS names the CSR asks for (already checked against the CA's policy). */
  names: string[];
  /** The token the client sent, if any. */
  token?: string;
  /** Where the request came from. */
  remote: StoqAddr;
}

/** Options for {@linkcode TrustChainHandler}: the CA and what the service answers with. */
export interface TrustChainHandlerOptions {
  /** The CA to serve. */
  ca: CertificateAuthority;
  /**
   * Decides whether an issuance request may proceed. Issuance is refused (`UNAUTHORIZED`)
   * without it.
   * @default {undefined}
   */
  authorize?: (request: IssueRequest) => boolean | Promise<boolean>;
  /**
   * The signed trust bundle to hand out (a value, or a function returning the current one).
   * @default {undefined} (`bundle` answers `null`)
   */
  trustBundle?:
    | SignedTrustBundle
    | (() => SignedTrustBundle | undefined);
  /**
   * Largest request accepted, in bytes.
   * @default {65536}
   */
  maxRequestBytes?: number;
}

/** Options for {@linkcode TrustChainService.listen}. */
export interface TrustChainServiceOptions
  extends StoqTransportOptions, TrustChainHandlerOptions {
  /**
   * App name of the service's own certificate, provisioned from `ca` (`trustchain` becomes
   * `trustchain.<domain>`); clients check it as `serverName`.
   * @default {"trustchain"}
   */
  identityName?: string;
  /**
   * Renewal of the service's own certificate, or `false`.
   * @default {{}}
   */
  rotation?: IdentityRotationOptions | false;
}

/**
 * Answers the TrustChain protocol (`trustchain/1`) on connections accepted elsewhere: a server
 * that offers several ALPNs on one listener hands it the connections that chose
 * {@linkcode TRUSTCHAIN_ALPN}. {@linkcode TrustChainService} is this handler on its own listener.
 *
 * @example Serving the CA beside another protocol on one listener
 * ```ts
 * import { CertificateAuthority, MemoryCaStore, TRUSTCHAIN_ALPN } from "../mod.ts";
 * import { StoqEndpoint } from "../../transport/mod.ts";
 * import { TrustChainHandler } from "./server.ts";
 * import { TrustChainClient } from "./client.ts";
 * const ca = await CertificateAuthority.open({ name: "ca-1", store: new MemoryCaStore() });
 * const identity = await ca.provision("trustchain");
 * await using endpoint = new StoqEndpoint({ hostname: "::1" });
 * const listener = endpoint.listen({ alpnProtocols: ["my-app", TRUSTCHAIN_ALPN], ...identity });
 * await using handler = new TrustChainHandler({ ca });
 * (async () => {
 *   for await (const conn of listener) {
 *     if (conn.protocol === TRUSTCHAIN_ALPN) handler.serve(conn);
 *     else conn.close();
 *   }
 * })();
 * await using client = await TrustChainClient.connect(endpoint, {
 *   hostname: "::1", port: listener.addr.port, roots: [ca.rootPem],
 * });
 * console.log((await client.info()).name); // ca-1
 * ```
 */
export class TrustChainHandler implements AsyncDisposable {
  /** The CA served. */
  readonly ca: CertificateAuthority;
  readonly #opts: TrustChainHandlerOptions;
  readonly #maxRequest: number;
  readonly #connections = new Set<StoqConnection>();
  // Requests being answered, and the connections' serving loops.
  readonly #requests = new Set<Promise<void>>();
  readonly #loops = new Set<Promise<void>>();
  #closing: Promise<void> | undefined;

  /**
   * Creates a handler; nothing is served until {@linkcode TrustChainHandler.serve}.
   *
   * @param opts The CA, issuance authorization, bundle and request limit.
   * @throws {TypeError} When `ca` is missing.
   * @throws {RangeError} When `maxRequestBytes` is below 1024.
   */
  constructor(opts: TrustChainHandlerOptions) {
    if (typeof opts?.ca?.issue !== "function") {
      throw new TypeError(
        `Cannot start the CA service as 'ca' must be a CertificateAuthority: current value is ${opts?.ca}`,
      );
    }
    const max = opts.maxRequestBytes ?? DEFAULT_MAX_REQUEST;
    if (!Number.isSafeInteger(max) || max < 1024) {
      throw new RangeError(
        `Cannot start the CA service as 'maxRequestBytes' must be an integer >= 1024: current value is ${max}`,
      );
    }
    this.ca = opts.ca;
    this.#opts = opts;
    this.#maxRequest = max;
  }

  static #track(set: Set<Promise<void>>, p: Promise<void>): void {
    set.add(p);
    p.finally(() => set.delete(p));
  }

  /**
   * Answers the requests that arrive on `conn`, one per bidirectional stream, until the
   * connection ends or the handler closes. A connection that arrives after
   * {@linkcode TrustChainHandler.close} is closed.
   *
   * @param conn A connection whose ALPN is {@linkcode TRUSTCHAIN_ALPN}.
   * @returns Resolves once the connection's streams have ended and its requests are answered.
   */
  serve(conn: StoqConnection): Promise<void> {
    if (this.#closing) {
      conn.close();
      return Promise.resolve();
    }
    this.#connections.add(conn);
    conn.closed.catch(() => {}).finally(() => this.#connections.delete(conn));
    const served = this.#serveConnection(conn);
    TrustChainHandler.#track(this.#loops, served);
    return served;
  }

  async #serveConnection(conn: StoqConnection): Promise<void> {
    const reader = conn.incomingBidirectionalStreams.getReader();
    const mine = new Set<Promise<void>>();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        if (this.#closing) {
          // Closing: requests already being answered finish, new ones are refused.
          value.readable.cancel().catch(() => {});
          value.writable.abort().catch(() => {});
          continue;
        }
        const p = this.#serveStream(conn, value);
        TrustChainHandler.#track(mine, p);
        TrustChainHandler.#track(this.#requests, p);
      }
    } catch {
      // The connection ended; its streams fail on their own.
    } finally {
      reader.releaseLock();
    }
    await Promise.allSettled([...mine]);
  }
  async #serveStream(
    conn: StoqConnection,
    stream: StoqBidirectionalStream,
  ): Promise<void> {
    let answer: Uint8Array;
    try {
      const request = decodeRequest(
        await readAll(stream.readable, this.#maxRequest),
      );
      const { method, params } = parseRequest(request);
      const handler = this.#handlers[method] as (
        conn: StoqConnection,
        params: Record<string, unknown>,
      ) => Promise<unknown>;
      answer = encodeResult(await handler(conn, params));
    } catch (err) {
      answer = encodeError(err);
    }
    try {
      await writeAll(stream.writable, answer);
    } catch {
      // The client went away; nothing to answer.
    }
  }

  // One handler per method of the protocol table; the type makes a missing one a compile error.
  readonly #handlers: {
    [M in Method]: (
      conn: StoqConnection,
      params: Params<M>,
    ) => Promise<Results[M]>;
  } = {
    info: () =>
      Promise.resolve({
        name: this.ca.name,
        domain: this.ca.domain,
        member: this.ca.member,
        treeHead: this.ca.treeHead ?? null,
      }),
    issue: (conn, params) => this.#issue(conn, params),
    status: (_conn, { serial }) => this.ca.status(serial),
    proof: async (_conn, { serial }) => (await this.ca.proof(serial)) ?? null,
    bundle: () => {
      const b = this.#opts.trustBundle;
      return Promise.resolve((typeof b === "function" ? b() : b) ?? null);
    },
    treeHead: () => Promise.resolve(this.ca.treeHead ?? null),
    checkpoint: () => this.ca.checkpoint(),
    consistency: async (_conn, { first, second }) => {
      const size = this.ca.treeSize;
      const to = second ?? size;
      if (first > to || to > size) {
        throw new StoqError(
          "REQUEST_INVALID",
          `Cannot prove consistency from ${first} to ${to}: the log has ${size} entries`,
        );
      }
      return (await this.ca.log.consistencyProof(first, to)).map(toBase64);
    },
    crl: () => this.ca.revocationList(),
  };

  async #issue(
    conn: StoqConnection,
    { csr: raw, token, lifetimeMs }: Params<"issue">,
  ): Promise<Results["issue"]> {
    let csr: string | Uint8Array;
    if (raw.includes("-----BEGIN")) csr = raw;
    else {
      try {
        csr = fromBase64(raw);
      } catch {
        throw new StoqError(
          "REQUEST_INVALID",
          "Cannot issue as 'csr' must be PEM or base64 DER",
        );
      }
    }
    const authorize = this.#opts.authorize;
    const remote = conn.remoteAddr;
    const issued = await this.ca.issue(csr, {
      ...(lifetimeMs === undefined ? {} : { lifetimeMs }),
      authorize: (names) =>
        authorize ? authorize({ names, token, remote }) : false,
    });
    return {
      serial: issued.serial,
      chain: [toBase64(issued.der), toBase64(this.ca.rootDer)],
      names: issued.names,
      notBefore: issued.notBefore.getTime(),
      notAfter: issued.notAfter.getTime(),
      proof: issued.proof,
    };
  }

  /**
   * Stops answering: requests being answered finish, new ones are refused, then the connections
   * served are closed (and later ones at once). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      while (this.#requests.size > 0) {
        await Promise.allSettled([...this.#requests]);
      }
      for (const c of this.#connections) c.close();
      while (this.#loops.size > 0) await Promise.allSettled([...this.#loops]);
    })();
    return this.#closing;
  }

  /** Same as {@linkcode TrustChainHandler.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * A CA served over STOQ to remote apps (see the module documentation for the protocol).
 *
 * @example Serving a CA and provisioning through it
 * ```ts
 * import { CertificateAuthority, MemoryCaStore } from "../mod.ts";
 * import { StoqEndpoint } from "../../transport/mod.ts";
 * import { TrustChainService } from "./server.ts";
 * import { TrustChainClient } from "./client.ts";
 * const ca = await CertificateAuthority.open({ name: "ca-1", store: new MemoryCaStore() });
 * await using endpoint = new StoqEndpoint({ hostname: "::1" });
 * await using service = await TrustChainService.listen(endpoint, {
 *   ca, authorize: ({ token }) => token === "s3cret",
 * });
 * await using client = await TrustChainClient.connect(endpoint, {
 *   hostname: "::1", port: service.addr.port, roots: [ca.rootPem], token: "s3cret",
 * });
 * console.log((await client.provision("my-app")).names); // [ "my-app.stoq.local" ]
 * ```
 */
export class TrustChainService implements AsyncDisposable {
  /** The CA served. */
  readonly ca: CertificateAuthority;
  readonly #server: IdentityListener;
  readonly #handler: TrustChainHandler;
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  private constructor(server: IdentityListener, handler: TrustChainHandler) {
    this.ca = handler.ca;
    this.#server = server;
    this.#handler = handler;
  }

  /**
   * Provisions the service's certificate from its CA and starts serving on `endpoint`.
   *
   * @param endpoint The local endpoint (its address is the service's).
   * @param opts The CA, issuance authorization and transport options.
   * @returns The running service.
   * @throws {TypeError} When `ca` is missing; the transport's listen errors.
   */
  static async listen(
    endpoint: StoqEndpoint,
    opts: TrustChainServiceOptions,
  ): Promise<TrustChainService> {
    const {
      ca,
      authorize,
      trustBundle,
      identityName,
      rotation,
      maxRequestBytes,
      ...transport
    } = opts ?? {};
    const handler = new TrustChainHandler({
      ca,
      authorize,
      trustBundle,
      maxRequestBytes,
    });
    const name = identityName ?? "trustchain";
    const server = await listenWithIdentity(endpoint, {
      ...transport,
      alpnProtocols: [TRUSTCHAIN_ALPN],
      provision: () => ca.provision(name),
      rotation,
    });
    const service = new TrustChainService(server, handler);
    service.#loop = service.#acceptLoop();
    return service;
  }

  /** The address clients connect to. */
  get addr(): StoqAddr {
    return this.#server.addr;
  }

  /** The service's own identity (its certificate's names are what clients check). */
  get identity(): ProvisionedIdentity {
    return this.#server.identity;
  }

  async #acceptLoop(): Promise<void> {
    for await (const conn of this.#server) this.#handler.serve(conn);
  }

  /**
   * Stops the service: no new connections, open ones closed once their requests are
   * answered. Idempotent. The endpoint stays open.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#server.close();
      await this.#loop;
      await this.#handler.close();
    })();
    return this.#closing;
  }

  /** Same as {@linkcode TrustChainService.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
