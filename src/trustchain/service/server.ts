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

/** Options for {@linkcode TrustChainService.listen}. */
export interface TrustChainServiceOptions extends StoqTransportOptions {
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
  /**
   * Largest request accepted, in bytes.
   * @default {65536}
   */
  maxRequestBytes?: number;
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
  readonly #opts: TrustChainServiceOptions;
  readonly #maxRequest: number;
  readonly #connections = new Set<StoqConnection>();
  readonly #pending = new Set<Promise<void>>();
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  private constructor(
    server: IdentityListener,
    opts: TrustChainServiceOptions,
  ) {
    this.ca = opts.ca;
    this.#server = server;
    this.#opts = opts;
    this.#maxRequest = opts.maxRequestBytes ?? DEFAULT_MAX_REQUEST;
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
    const {
      ca,
      authorize: _a,
      trustBundle: _b,
      identityName,
      rotation,
      maxRequestBytes: _m,
      ...transport
    } = opts;
    const name = identityName ?? "trustchain";
    const server = await listenWithIdentity(endpoint, {
      ...transport,
      alpnProtocols: [TRUSTCHAIN_ALPN],
      provision: () => ca.provision(name),
      rotation,
    });
    const service = new TrustChainService(server, opts);
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

  #track(p: Promise<void>): void {
    this.#pending.add(p);
    p.finally(() => this.#pending.delete(p));
  }

  async #acceptLoop(): Promise<void> {
    for await (const conn of this.#server) {
      if (this.#closing) {
        conn.close();
        continue;
      }
      this.#connections.add(conn);
      conn.closed.catch(() => {}).finally(() => this.#connections.delete(conn));
      this.#track(this.#serveConnection(conn));
    }
  }

  async #serveConnection(conn: StoqConnection): Promise<void> {
    const reader = conn.incomingBidirectionalStreams.getReader();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        this.#track(this.#serveStream(conn, value));
      }
    } catch {
      // The connection ended; its streams fail on their own.
    } finally {
      reader.releaseLock();
    }
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
   * Stops the service: no new connections, open ones closed once their requests are
   * answered. Idempotent. The endpoint stays open.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#server.close();
      await this.#loop;
      for (const c of this.#connections) c.close();
      while (this.#pending.size > 0) {
        await Promise.allSettled([...this.#pending]);
      }
    })();
    return this.#closing;
  }

  /** Same as {@linkcode TrustChainService.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
