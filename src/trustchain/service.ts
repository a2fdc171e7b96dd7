/**
 * The TrustChain CA service over STOQ, and its client.
 *
 * Protocol `trustchain/1` (the ALPN): one request per bidirectional stream. The client writes one
 * UTF-8 JSON object `{ "method": string, ...params }` and finishes its side; the service answers
 * with one JSON object, `{ "ok": true, "result": … }` or
 * `{ "ok": false, "error": { "code": StoqErrorCode, "message": string } }`, and finishes its side.
 * Binary values (DER, hashes) are base64; times are milliseconds since the epoch.
 *
 * | method        | params                       | result                                     |
 * | ------------- | ---------------------------- | ------------------------------------------ |
 * | `info`        |                              | `{ name, domain, member, treeHead }`       |
 * | `issue`       | `csr` (base64 DER or PEM), `lifetimeMs?`, `token?` | `{ serial, chain, names, notBefore, notAfter, proof }` |
 * | `status`      | `serial`                     | {@linkcode SignedStatus}                   |
 * | `proof`       | `serial`                     | {@linkcode TransparencyProof} or `null`    |
 * | `bundle`      |                              | {@linkcode SignedTrustBundle} or `null`    |
 * | `treeHead`    |                              | the latest signed tree head or `null`      |
 * | `checkpoint`  |                              | a checkpoint co-signed with Falcon-512     |
 * | `consistency` | `first`, `second?`           | base64 RFC 9162 consistency proof          |
 * | `crl`         |                              | the CRL, PEM                               |
 *
 * Bad requests get `REQUEST_INVALID` (not JSON, unknown method, bad parameter, larger than the
 * limit); refused issuance `UNAUTHORIZED`; policy refusals keep the CA's codes
 * (`NAME_NOT_ALLOWED`, `CSR_BAD_SIGNATURE`, …); anything unexpected `INTERNAL_ERROR`.
 *
 * Trust: the client pins the CA roots it was given (`roots`) and the service's name
 * (`serverName`) — the bootstrap for reaching the CA that issues everything else. Issuance needs
 * the service's `authorize` hook to agree (e.g. an enrollment token); it is refused otherwise. The
 * private key of a remotely provisioned app never leaves the app: {@linkcode TrustChainClient.provision}
 * generates it locally and sends only the CSR.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import type {
  StoqAddr,
  StoqBidirectionalStream,
  StoqConnection,
  StoqEndpoint,
  StoqTransportOptions,
} from "../transport/mod.ts";
import { StoqError, type StoqErrorCode } from "../errors.ts";
import {
  _createKeyAndCsr,
  type CertificateAuthority,
  type ProvisionedIdentity,
} from "./ca.ts";
import type { TransparencyProof } from "./ct_log.ts";
import type {
  FederationMember,
  PeerEvidenceSource,
  SignedTrustBundle,
} from "./federation.ts";
import type { SignedStatus } from "./status.ts";
import {
  type IdentityListener,
  type IdentityRotationOptions,
  listenWithIdentity,
} from "./stoq.ts";
import { buf, concatBytes, fromBase64, toBase64 } from "./_bytes.ts";

/** The ALPN protocol of the TrustChain service. */
export const TRUSTCHAIN_ALPN = "trustchain/1";

const DEFAULT_MAX_REQUEST = 64 * 1024;
const MAX_RESPONSE = 4 * 1024 * 1024;

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

/** The service's `info` answer. */
export interface ServiceInfo {
  /** The CA name (its federation member name). */
  name: string;
  /** The domain bare app names get. */
  domain: string;
  /** The CA as a federation member. */
  member: FederationMember;
  /** The latest signed tree head, if anything was issued. */
  treeHead: string | null;
}

interface _IssueResult {
  serial: string;
  chain: string[];
  names: string[];
  notBefore: number;
  notAfter: number;
  proof: TransparencyProof;
}

type _Request = Record<string, unknown> & { method?: unknown };

function _bad(message: string): StoqError {
  return new StoqError("REQUEST_INVALID", message);
}

function _string(req: _Request, key: string, optional = false): string {
  const v = req[key];
  if (v === undefined && optional) return undefined as unknown as string;
  if (typeof v !== "string" || v.length === 0 || v.length > 65536) {
    throw _bad(
      `Cannot handle ${req.method} as '${key}' must be a non-empty string: current value is ${
        JSON.stringify(v)?.slice(0, 40)
      }`,
    );
  }
  return v;
}

function _int(req: _Request, key: string, optional = false): number {
  const v = req[key];
  if (v === undefined && optional) return undefined as unknown as number;
  if (!Number.isSafeInteger(v) || (v as number) < 0) {
    throw _bad(
      `Cannot handle ${req.method} as '${key}' must be a non-negative integer: current value is ${
        JSON.stringify(v)?.slice(0, 40)
      }`,
    );
  }
  return v as number;
}

/** Reads a whole stream, refusing more than `limit` bytes. */
async function _readAll(
  readable: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = readable.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel(0).catch(() => {});
        throw _bad(
          `The message exceeds ${limit} bytes: send one request per stream, within the limit`,
        );
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return concatBytes(...chunks);
}

async function _writeAll(
  writable: WritableStream<Uint8Array>,
  data: Uint8Array,
): Promise<void> {
  const writer = writable.getWriter();
  try {
    await writer.write(data);
    await writer.close();
  } finally {
    writer.releaseLock();
  }
}

function _errorBody(err: unknown): { code: StoqErrorCode; message: string } {
  if (err instanceof StoqError) return { code: err.code, message: err.message };
  if (err instanceof TypeError || err instanceof RangeError) {
    return { code: "REQUEST_INVALID", message: err.message };
  }
  return {
    code: "INTERNAL_ERROR",
    message: "The CA service failed on this request: see its logs",
  };
}

/**
 * A CA served over STOQ to remote apps (see the module documentation for the protocol).
 *
 * @example Serving a CA and provisioning through it
 * ```ts
 * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
 * import { StoqEndpoint } from "../transport/mod.ts";
 * import { TrustChainClient, TrustChainService } from "./service.ts";
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
    let body: unknown;
    try {
      let req: _Request;
      try {
        const bytes = await _readAll(stream.readable, this.#maxRequest);
        req = JSON.parse(
          new TextDecoder("utf-8", { fatal: true }).decode(bytes),
        );
      } catch (err) {
        if (err instanceof StoqError && err.code === "REQUEST_INVALID") {
          throw err;
        }
        if (err instanceof StoqError) throw err; // the stream or connection failed
        throw _bad("The request is not UTF-8 JSON: send one JSON object");
      }
      if (typeof req !== "object" || req === null || Array.isArray(req)) {
        throw _bad("The request must be a JSON object with a 'method'");
      }
      body = { ok: true, result: (await this.#dispatch(conn, req)) ?? null };
    } catch (err) {
      body = { ok: false, error: _errorBody(err) };
    }
    try {
      await _writeAll(
        stream.writable,
        new TextEncoder().encode(JSON.stringify(body)),
      );
    } catch {
      // The client went away; nothing to answer.
    }
  }

  async #dispatch(conn: StoqConnection, req: _Request): Promise<unknown> {
    const ca = this.ca;
    switch (req.method) {
      case "info":
        return {
          name: ca.name,
          domain: ca.domain,
          member: ca.member,
          treeHead: ca.treeHead ?? null,
        } satisfies ServiceInfo;
      case "issue":
        return await this.#issue(conn, req);
      case "status":
        return await ca.status(_string(req, "serial"));
      case "proof":
        return (await ca.proof(_string(req, "serial"))) ?? null;
      case "bundle": {
        const b = this.#opts.trustBundle;
        return (typeof b === "function" ? b() : b) ?? null;
      }
      case "treeHead":
        return ca.treeHead ?? null;
      case "checkpoint":
        return await ca.checkpoint();
      case "consistency": {
        const size = ca.log.size;
        const first = _int(req, "first");
        const second = _int(req, "second", true) ?? size;
        if (first > second || second > size) {
          throw _bad(
            `Cannot prove consistency from ${first} to ${second}: the log has ${size} entries`,
          );
        }
        return ca.log.consistencyProof(first, second).map(toBase64);
      }
      case "crl":
        return await ca.revocationList();
      default:
        throw _bad(
          `Unknown method ${
            JSON.stringify(req.method)?.slice(0, 40)
          }: use info, issue, status, proof, bundle, treeHead, checkpoint, consistency or crl`,
        );
    }
  }

  async #issue(conn: StoqConnection, req: _Request): Promise<_IssueResult> {
    const raw = _string(req, "csr");
    const token = _string(req, "token", true);
    const lifetimeMs = _int(req, "lifetimeMs", true);
    let csr: string | Uint8Array;
    if (raw.includes("-----BEGIN")) csr = raw;
    else {
      try {
        csr = fromBase64(raw);
      } catch {
        throw _bad("Cannot issue as 'csr' must be PEM or base64 DER");
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

/** Options for {@linkcode TrustChainClient.connect}. */
export interface TrustChainClientOptions extends StoqTransportOptions {
  /** The service's IPv6 address or host name. */
  hostname: string;
  /** The service's UDP port. */
  port: number;
  /** PEM root certificates the service's certificate must be issued by (the CA's `rootPem`). */
  roots: string[];
  /**
   * The name the service's certificate must carry.
   * @default {"trustchain.stoq.local"}
   */
  serverName?: string;
  /**
   * Credential sent with issuance requests (checked by the service's `authorize`).
   * @default {undefined}
   */
  token?: string;
}

function _pem(der: Uint8Array, label: string): string {
  return x509.PemConverter.encode(buf(der), label);
}

/** A `verifyPeer` for the bootstrap connection: issued by a pinned root, in date, named right. */
function _pinnedRootVerifier(
  roots: x509.X509Certificate[],
  serverName: string,
): (peer: { leaf: Uint8Array }) => Promise<boolean> {
  return async ({ leaf: der }) => {
    try {
      const leaf = new x509.X509Certificate(buf(der));
      const now = new Date();
      if (now < leaf.notBefore || now > leaf.notAfter) return false;
      if (leaf.getExtension(x509.BasicConstraintsExtension)?.ca) return false;
      const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
      const names = san?.names.items.filter((i) =>
        i.type === "dns"
      ).map((i) => i.value.toLowerCase()) ?? [];
      if (!names.includes(serverName)) {
        return false;
      }
      for (const root of roots) {
        if (root.subject !== leaf.issuer) {
          continue;
        }
        if (
          await leaf.verify({ publicKey: root.publicKey, signatureOnly: true })
        ) {
          return true;
        }
      }
      return false;
    } catch {
      return false;
    }
  };
}

/**
 * Talks to a {@linkcode TrustChainService}: provisions apps, fetches proofs, statuses, bundles
 * and tree heads. Reconnects on the next request when the connection dropped (e.g. idle).
 *
 * @example Provisioning an app through a remote CA
 * ```ts ignore
 * await using client = await TrustChainClient.connect(endpoint, {
 *   hostname: "2001:db8::1", port: 4433, roots: [caRootPem], token,
 * });
 * const identity = await client.provision("my-app"); // key generated here, never sent
 * ```
 */
export class TrustChainClient implements AsyncDisposable {
  readonly #endpoint: StoqEndpoint;
  readonly #opts: TrustChainClientOptions;
  readonly #verify: (peer: { leaf: Uint8Array }) => Promise<boolean>;
  #conn: Promise<StoqConnection> | undefined;
  #info: ServiceInfo | undefined;
  #closed = false;

  private constructor(endpoint: StoqEndpoint, opts: TrustChainClientOptions) {
    this.#endpoint = endpoint;
    this.#opts = opts;
    const roots = opts.roots.map((pem, i) => {
      try {
        return new x509.X509Certificate(pem);
      } catch (cause) {
        throw new TypeError(
          `Cannot connect to the CA service as 'roots[${i}]' must be a PEM certificate`,
          { cause },
        );
      }
    });
    this.#verify = _pinnedRootVerifier(
      roots,
      (opts.serverName ?? "trustchain.stoq.local").toLowerCase(),
    );
  }

  /**
   * Connects and reads the service's `info`.
   *
   * @param endpoint The local endpoint.
   * @param opts Where the service is and how to trust it.
   * @returns The client.
   * @throws {StoqError} `CERTIFICATE_REJECTED` when the service is not who `roots` and
   * `serverName` say; the transport's connect errors.
   */
  static async connect(
    endpoint: StoqEndpoint,
    opts: TrustChainClientOptions,
  ): Promise<TrustChainClient> {
    if (!Array.isArray(opts?.roots) || opts.roots.length === 0) {
      throw new TypeError(
        `Cannot connect to the CA service as 'roots' must list at least one PEM root: current value is ${opts?.roots}`,
      );
    }
    const client = new TrustChainClient(endpoint, opts);
    try {
      client.#info = await client.#call<ServiceInfo>({ method: "info" });
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  /** The CA's name, i.e. its federation member name. */
  get member(): string {
    return this.#info!.name;
  }

  /** The domain the CA gives bare app names. */
  get domain(): string {
    return this.#info!.domain;
  }

  #connection(): Promise<StoqConnection> {
    if (this.#closed) {
      return Promise.reject(
        new StoqError("CLOSED", "The TrustChain client is closed"),
      );
    }
    if (!this.#conn) {
      const {
        roots: _r,
        serverName,
        token: _t,
        ...transport
      } = this.#opts;
      const conn = this.#endpoint.connect({
        ...transport,
        alpnProtocols: [TRUSTCHAIN_ALPN],
        serverName: serverName ?? "trustchain.stoq.local",
        verifyPeer: this.#verify,
      });
      this.#conn = conn;
      const forget = () => {
        if (this.#conn === conn) this.#conn = undefined;
      };
      conn.then((c) => c.closed.catch(() => {}).finally(forget), forget);
    }
    return this.#conn;
  }

  async #call<T>(request: Record<string, unknown>): Promise<T> {
    const conn = await this.#connection();
    const { readable, writable } = await conn.createBidirectionalStream();
    await _writeAll(
      writable,
      new TextEncoder().encode(JSON.stringify(request)),
    );
    const bytes = await _readAll(readable, MAX_RESPONSE);
    let reply: {
      ok?: boolean;
      result?: unknown;
      error?: { code?: string; message?: string };
    };
    try {
      reply = JSON.parse(new TextDecoder().decode(bytes));
    } catch (cause) {
      throw new StoqError(
        "INTERNAL_ERROR",
        "The CA service sent an answer that is not JSON",
        { cause },
      );
    }
    if (reply?.ok === true) return reply.result as T;
    const code = typeof reply?.error?.code === "string"
      ? reply.error.code as StoqErrorCode
      : "INTERNAL_ERROR";
    throw new StoqError(
      code,
      String(reply?.error?.message ?? "The CA service refused the request"),
    );
  }

  /**
   * The service's CA name, domain, member entry and latest tree head.
   *
   * @returns The info.
   */
  info(): Promise<ServiceInfo> {
    return this.#call({ method: "info" });
  }

  /**
   * Sends a CSR for issuance.
   *
   * @param csr PKCS#10 request, PEM or DER.
   * @param opts Requested lifetime.
   * @returns The leaf and root DER, names, validity and transparency proof.
   * @throws {StoqError} `UNAUTHORIZED`, the CA's policy codes, `REQUEST_INVALID`.
   */
  async issue(
    csr: string | Uint8Array,
    opts: { lifetimeMs?: number } = {},
  ): Promise<{
    serial: string;
    chainDer: Uint8Array[];
    names: string[];
    notBefore: Date;
    notAfter: Date;
    proof: TransparencyProof;
  }> {
    const r = await this.#call<_IssueResult>({
      method: "issue",
      csr: typeof csr === "string" ? csr : toBase64(csr),
      ...(opts.lifetimeMs === undefined ? {} : { lifetimeMs: opts.lifetimeMs }),
      ...(this.#opts.token === undefined ? {} : { token: this.#opts.token }),
    });
    return {
      serial: r.serial,
      chainDer: r.chain.map(fromBase64),
      names: r.names,
      notBefore: new Date(r.notBefore),
      notAfter: new Date(r.notAfter),
      proof: r.proof,
    };
  }

  /**
   * Provisions an app on this machine: generates its key here, sends only the CSR.
   *
   * @param app App name (`my-app` becomes `my-app.<domain>`) or full DNS name.
   * @param opts Requested lifetime.
   * @returns `{ cert, key }` for a STOQ endpoint, plus chain, proof and validity.
   */
  async provision(
    app: string,
    opts: { lifetimeMs?: number } = {},
  ): Promise<ProvisionedIdentity> {
    if (typeof app !== "string" || app.length === 0) {
      throw new TypeError(
        `Cannot provision as 'app' must be a non-empty name: current value is ${app}`,
      );
    }
    const name = app.includes(".") ? app : `${app}.${this.domain}`;
    const { csr, key } = await _createKeyAndCsr(name);
    const r = await this.issue(csr, opts);
    const pems = r.chainDer.map((d) => _pem(d, "CERTIFICATE"));
    return {
      serial: r.serial,
      der: r.chainDer[0],
      pem: pems[0],
      notBefore: r.notBefore,
      notAfter: r.notAfter,
      names: r.names,
      proof: r.proof,
      cert: `${pems.join("\n")}\n`,
      key,
      chainDer: r.chainDer,
    };
  }

  /**
   * A signed revocation status.
   *
   * @param serial Serial (hex).
   * @returns The status signed by the CA's root.
   */
  status(serial: string): Promise<SignedStatus> {
    return this.#call({ method: "status", serial });
  }

  /**
   * The transparency proof of a certificate the CA issued.
   *
   * @param serial Serial (hex).
   * @returns The proof, or `undefined` for an unknown serial.
   */
  async proof(serial: string): Promise<TransparencyProof | undefined> {
    return (await this.#call<TransparencyProof | null>({
      method: "proof",
      serial,
    })) ?? undefined;
  }

  /**
   * The signed trust bundle the service hands out.
   *
   * @returns The bundle, or `undefined` when the service has none.
   */
  async bundle(): Promise<SignedTrustBundle | undefined> {
    return (await this.#call<SignedTrustBundle | null>({ method: "bundle" })) ??
      undefined;
  }

  /**
   * The latest signed tree head.
   *
   * @returns The checkpoint note, or `undefined` before the first issuance.
   */
  async treeHead(): Promise<string | undefined> {
    return (await this.#call<string | null>({ method: "treeHead" })) ??
      undefined;
  }

  /**
   * A fresh checkpoint co-signed with Falcon-512.
   *
   * @returns The checkpoint note.
   */
  checkpoint(): Promise<string> {
    return this.#call({ method: "checkpoint" });
  }

  /**
   * An RFC 9162 consistency proof between two tree sizes.
   *
   * @param first Older size.
   * @param second Newer size (the log's size by default).
   * @returns The proof nodes.
   */
  async consistencyProof(
    first: number,
    second?: number,
  ): Promise<Uint8Array[]> {
    const r = await this.#call<string[]>({
      method: "consistency",
      first,
      ...(second === undefined ? {} : { second }),
    });
    return r.map(fromBase64);
  }

  /**
   * The CA's revocation list.
   *
   * @returns The CRL, PEM.
   */
  revocationList(): Promise<string> {
    return this.#call({ method: "crl" });
  }

  /** Closes the connection to the service; idempotent. The endpoint stays open. */
  async close(): Promise<void> {
    this.#closed = true;
    const conn = this.#conn;
    this.#conn = undefined;
    const c = await conn?.catch(() => undefined);
    if (c) {
      c.close();
      await c.finished;
    }
  }

  /** Same as {@linkcode TrustChainClient.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * A {@linkcode PeerEvidenceSource} backed by CA services: proofs and statuses are asked of the
 * service of the member that issued the certificate. Proofs are cached (a proof stays valid:
 * it proves inclusion in a signed tree head); statuses are fetched fresh each time.
 *
 * @param clients One client per federation member whose certificates should validate.
 * @returns The source, for `Federation.create(bundle, { source })`.
 *
 * @example Validating peers with evidence fetched over STOQ
 * ```ts ignore
 * const client = await TrustChainClient.connect(endpoint, { hostname, port, roots: [rootPem] });
 * const federation = await Federation.create(await client.bundle(), {
 *   source: evidenceFromServices(client),
 * });
 * ```
 */
export function evidenceFromServices(
  ...clients: TrustChainClient[]
): PeerEvidenceSource {
  const proofs = new Map<string, TransparencyProof>();
  const find = (member: string) => clients.find((c) => c.member === member);
  return {
    async proof(member, serial) {
      const key = `${member}\n${serial}`;
      const hit = proofs.get(key);
      if (hit) return hit;
      const proof = await find(member)?.proof(serial);
      if (proof) {
        if (proofs.size >= 10_000) proofs.clear();
        proofs.set(key, proof);
      }
      return proof;
    },
    async status(member, serial) {
      return await find(member)?.status(serial);
    },
  };
}
