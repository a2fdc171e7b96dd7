/**
 * The client of the TrustChain CA service (protocol `trustchain/1`, see `protocol.ts`).
 *
 * Trust: the client pins the CA roots it was given (`roots`) and the service's name
 * (`serverName`). The private key of a remotely provisioned app never leaves the app:
 * {@linkcode TrustChainClient.provision} generates it locally and sends only the CSR.
 *
 * @module
 */

import { createHash } from "node:crypto";
import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import type {
  StoqConnection,
  StoqEndpoint,
  StoqTransportOptions,
} from "../../transport/mod.ts";
import { StoqError } from "../../errors.ts";
import type { ProvisionedIdentity } from "../ca.ts";
import type { TransparencyProof } from "../core/ct_log.ts";
import type { SignedTrustBundle } from "../core/federation.ts";
import { createKeyAndCsr, pem } from "../core/keys.ts";
import type { SignedStatus } from "../core/status.ts";
import {
  decodeReply,
  encodeRequest,
  MAX_RESPONSE,
  type Method,
  type Params,
  readAll,
  type Results,
  type ServiceInfo,
  TRUSTCHAIN_ALPN,
  writeAll,
} from "./protocol.ts";
import { buf, fromBase64, toBase64 } from "../core/_bytes.ts";
import { peerChain } from "../binding.ts";

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

/** Options for {@linkcode TrustChainClient.fetchRoot}. */
export interface TrustChainFetchRootOptions extends StoqTransportOptions {
  /** The service's IPv6 address or host name. */
  hostname: string;
  /** The service's UDP port. */
  port: number;
  /**
   * The SHA-256 of the root certificate (DER), in hex; colons and case are ignored. A STOQ node
   * logs it when it starts (`root_sha256`).
   */
  fingerprint: string;
  /**
   * The name the service's certificate must carry.
   * @default {"trustchain.stoq.local"}
   */
  serverName?: string;
}

function _sha256Hex(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex");
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
 * ```ts
 * import { CertificateAuthority, MemoryCaStore } from "../mod.ts";
 * import { StoqEndpoint } from "../../transport/mod.ts";
 * import { TrustChainService } from "./server.ts";
 * import { TrustChainClient } from "./client.ts";
 * const ca = await CertificateAuthority.open({ name: "ca-1", store: new MemoryCaStore() });
 * await using endpoint = new StoqEndpoint({ hostname: "::1" });
 * await using service = await TrustChainService.listen(endpoint, { ca, authorize: () => true });
 * await using client = await TrustChainClient.connect(endpoint, {
 *   hostname: "::1", port: service.addr.port, roots: [ca.rootPem],
 * });
 * const identity = await client.provision("my-app"); // key generated here, never sent
 * console.log(identity.key.includes("PRIVATE KEY"), identity.proof.leafIndex); // true 1
 * ```
 */
export class TrustChainClient implements AsyncDisposable {
  readonly #endpoint: StoqEndpoint;
  readonly #opts: TrustChainClientOptions;
  readonly #verify: (peer: { leaf: Uint8Array }) => Promise<boolean>;
  #conn: Promise<StoqConnection> | undefined;
  #info: ServiceInfo | undefined;
  #closed = false;

  private constructor(
    endpoint: StoqEndpoint,
    opts: TrustChainClientOptions,
    verify?: (peer: { leaf: Uint8Array }) => Promise<boolean>,
  ) {
    this.#endpoint = endpoint;
    this.#opts = opts;
    if (verify) {
      this.#verify = verify;
      return;
    }
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
      client.#info = await client.#call("info", {});
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  /**
   * Fetches a CA's root certificate from its service, trusting it only when its SHA-256 matches
   * `fingerprint` (the way `step ca bootstrap` does): the service's chain must contain a
   * certificate with that fingerprint that issued the service's certificate for `serverName`,
   * and the service's `info` must name the same root. Use the root as `caCerts` or `roots`.
   *
   * @param endpoint The local endpoint.
   * @param opts Where the service is and the fingerprint to expect.
   * @returns The root certificate, PEM.
   * @throws {StoqError} `CERTIFICATE_REJECTED` when the service presents no such root,
   * `CERT_UNTRUSTED` when its `info` names another root, `INVALID_ARGUMENT` for a malformed
   * fingerprint; the transport's connect errors.
   *
   * @example Bootstrapping trust in a CA from its fingerprint
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "../mod.ts";
   * import { StoqEndpoint } from "../../transport/mod.ts";
   * import { TrustChainService } from "./server.ts";
   * import { TrustChainClient } from "./client.ts";
   * const ca = await CertificateAuthority.open({ name: "ca-1", store: new MemoryCaStore() });
   * const fingerprint = ca.rootFingerprint;
   * await using endpoint = new StoqEndpoint({ hostname: "::1" });
   * await using service = await TrustChainService.listen(endpoint, { ca });
   * const root = await TrustChainClient.fetchRoot(endpoint, {
   *   hostname: "::1", port: service.addr.port, fingerprint,
   * });
   * console.log(root === ca.rootPem); // true
   * ```
   */
  static async fetchRoot(
    endpoint: StoqEndpoint,
    opts: TrustChainFetchRootOptions,
  ): Promise<string> {
    const fingerprint = typeof opts?.fingerprint === "string"
      ? opts.fingerprint.replaceAll(":", "").toLowerCase()
      : "";
    if (!/^[0-9a-f]{64}$/.test(fingerprint)) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot fetch the root as 'fingerprint' must be a SHA-256 in hex (64 digits): current value is ${
          JSON.stringify(opts?.fingerprint)
        }`,
      );
    }
    const serverName = (opts.serverName ?? "trustchain.stoq.local")
      .toLowerCase();
    const verify = async (peer: { leaf: Uint8Array; chain?: Uint8Array }) => {
      try {
        const root = peerChain({
          leaf: peer.leaf,
          chain: peer.chain ?? new Uint8Array(0),
        }).find((der) => _sha256Hex(der) === fingerprint);
        if (!root) return false;
        const pinned = new x509.X509Certificate(buf(root));
        return await _pinnedRootVerifier([pinned], serverName)(peer);
      } catch {
        return false;
      }
    };
    const { fingerprint: _f, ...rest } = opts;
    const client = new TrustChainClient(
      endpoint,
      { ...rest, roots: [], serverName },
      verify,
    );
    try {
      const info = await client.#call("info", {});
      const root = fromBase64(info.member.root);
      if (_sha256Hex(root) !== fingerprint) {
        throw new StoqError(
          "CERT_UNTRUSTED",
          `The service at [${opts.hostname}]:${opts.port} names a root whose SHA-256 is not ${fingerprint}`,
        );
      }
      return pem(root, "CERTIFICATE");
    } finally {
      await client.close();
    }
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

  async #call<M extends Method>(
    method: M,
    params: Params<M>,
  ): Promise<Results[M]> {
    const conn = await this.#connection();
    const { readable, writable } = await conn.createBidirectionalStream();
    await writeAll(writable, encodeRequest(method, params));
    return decodeReply<Results[M]>(await readAll(readable, MAX_RESPONSE));
  }

  /**
   * The service's CA name, domain, member entry and latest tree head.
   *
   * @returns The info.
   */
  info(): Promise<ServiceInfo> {
    return this.#call("info", {});
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
    const r = await this.#call("issue", {
      csr: typeof csr === "string" ? csr : toBase64(csr),
      lifetimeMs: opts.lifetimeMs,
      token: this.#opts.token,
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
    const { csr, key } = await createKeyAndCsr(name);
    const r = await this.issue(csr, opts);
    const pems = r.chainDer.map((d) => pem(d, "CERTIFICATE"));
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
    return this.#call("status", { serial });
  }

  /**
   * The transparency proof of a certificate the CA issued.
   *
   * @param serial Serial (hex).
   * @returns The proof, or `undefined` for an unknown serial.
   */
  async proof(serial: string): Promise<TransparencyProof | undefined> {
    return (await this.#call("proof", { serial })) ?? undefined;
  }

  /**
   * The signed trust bundle the service hands out.
   *
   * @returns The bundle, or `undefined` when the service has none.
   */
  async bundle(): Promise<SignedTrustBundle | undefined> {
    return (await this.#call("bundle", {})) ?? undefined;
  }

  /**
   * The latest signed tree head.
   *
   * @returns The checkpoint note, or `undefined` before the first issuance.
   */
  async treeHead(): Promise<string | undefined> {
    return (await this.#call("treeHead", {})) ?? undefined;
  }

  /**
   * A fresh checkpoint co-signed with Falcon-512.
   *
   * @returns The checkpoint note.
   */
  checkpoint(): Promise<string> {
    return this.#call("checkpoint", {});
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
    const r = await this.#call("consistency", { first, second });
    return r.map(fromBase64);
  }

  /**
   * The CA's revocation list.
   *
   * @returns The CRL, PEM.
   */
  revocationList(): Promise<string> {
    return this.#call("crl", {});
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
