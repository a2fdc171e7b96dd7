/**
 * The transport binding of TrustChain: endpoints that serve a provisioned, self-renewing identity
 * and peers that validate each other against a {@linkcode Federation}.
 *
 * With the CA service (`service/server.ts`, `service/client.ts`), this is where TrustChain wires
 * the transport in (through its public API, `src/transport/mod.ts`); `core/` stays free of I/O.
 *
 * How validation works: the transport defers certificate validation to JS (msquic's portable
 * certificates, `verifyPeer`), and {@linkcode federationVerifier} runs
 * {@linkcode Federation.verifyPeer} on the leaf: issued by a current member's root, within its
 * validity, Falcon co-signature valid, embedded SCT valid, and present in the member's
 * transparency log. The inclusion proof cannot travel inside the certificate (it exists only after
 * signing) and TLS has no slot for it,
 * so the verifier looks it up by (member, serial) through the federation's
 * {@linkcode PeerEvidenceSource}: local CAs (`evidenceSource(ca)`) or the members' CA services over
 * STOQ (`evidenceFromServices(client)` in `service/evidence.ts`), which also answer revocation
 * status. The SCT needs no lookup: it is embedded in the certificate and checked offline.
 *
 * With TLS 1.3 a client finishes its handshake before the server has checked the client
 * certificate, so a client the server refuses may see `connect()` resolve and then `closed`
 * reject with `CERTIFICATE_REJECTED`; the server never hands such a connection to `accept()`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import type {
  PeerCertificate,
  PeerVerifier,
  StoqAddr,
  StoqCertificate,
  StoqConnection,
  StoqConnectOptions,
  StoqEndpoint,
  StoqListener,
  StoqListenOptions,
} from "../transport/mod.ts";
import { StoqError } from "../errors.ts";
import type { ProvisionedIdentity } from "./ca.ts";
import type { Federation, VerifiedPeer } from "./core/federation.ts";
import { CertificateRotator, type RotationClock } from "./rotation.ts";
import { buf, equalBytes } from "./core/_bytes.ts";

// Which peer each verified certificate belongs to; keyed by the object the transport handed to
// the verifier, which the connection keeps as `peerCertificate`.
const _verified = new WeakMap<PeerCertificate, VerifiedPeer>();

/**
 * The peer's certificate chain as DER, leaf first, from what the transport handed over.
 *
 * @param peer The certificate the transport received.
 * @returns The chain; empty when the peer sent no certificate.
 * @throws {StoqError} `CERT_UNTRUSTED` when the PKCS#7 bundle cannot be parsed.
 *
 * @example A peer without a certificate
 * ```ts
 * import { peerChain } from "./binding.ts";
 * console.log(peerChain({ leaf: new Uint8Array(0), chain: new Uint8Array(0) }).length); // 0
 * ```
 */
export function peerChain(peer: PeerCertificate): Uint8Array[] {
  if (!(peer?.leaf instanceof Uint8Array) || peer.leaf.length === 0) return [];
  const out = [peer.leaf];
  if (peer.chain instanceof Uint8Array && peer.chain.length > 0) {
    let certs: x509.X509Certificates;
    try {
      certs = new x509.X509Certificates(buf(peer.chain));
    } catch (cause) {
      throw new StoqError(
        "CERT_UNTRUSTED",
        "The peer's certificate chain (PKCS#7) cannot be parsed",
        { cause },
      );
    }
    for (const c of certs) {
      const der = new Uint8Array(c.rawData);
      if (!equalBytes(der, peer.leaf)) out.push(der);
    }
  }
  return out;
}

/** Options for {@linkcode federationVerifier}. */
export interface FederationVerifierOptions {
  /**
   * A DNS name the peer's certificate must carry (a client checking its server).
   * @default {undefined} (any certificate a current member issued)
   */
  serverName?: string;
  /**
   * Called with each accepted peer.
   * @default {undefined}
   */
  onVerified?: (peer: VerifiedPeer) => void;
  /**
   * Called with the reason a peer was refused (the handshake itself only says
   * `CERTIFICATE_REJECTED`).
   * @default {undefined}
   */
  onRejected?: (error: StoqError) => void;
  /**
   * Milliseconds a verdict for one exact chain is reused (never past the certificate's
   * expiry), so that repeated connections with the same certificate skip the proof and status
   * lookups. A certificate revoked meanwhile is refused once its verdict expires; 0 checks every
   * time.
   * @default {60000}
   */
  cacheMs?: number;
}

/** Verdicts a verifier keeps at most. */
const MAX_CACHED_VERDICTS = 1024;

/**
 * A transport `verifyPeer` callback that accepts exactly the certificates the federation
 * accepts (see {@linkcode Federation.verifyPeer}), looking the transparency proof and status up
 * through the federation's evidence source.
 *
 * @param federation The federation to validate against.
 * @param opts Expected name and hooks.
 * @returns The callback for `listen({ verifyPeer })` or `connect({ verifyPeer })`: it resolves
 *   `true` for an accepted peer and rejects with the {@linkcode StoqError} that refused it, which
 *   the transport carries as the cause of `CERTIFICATE_REJECTED`.
 *
 * @example Refusing a peer without a certificate
 * ```ts
 * import { CertificateAuthority, evidenceSource, Federation, MemoryCaStore } from "./mod.ts";
 * import { federationVerifier } from "./binding.ts";
 * const ca = await CertificateAuthority.open({ name: "a", store: new MemoryCaStore() });
 * const bundle = { version: 1, members: [ca.member] };
 * const fed = await Federation.create({ bundle, signatures: [await ca.endorse(bundle)] }, { source: evidenceSource(ca) });
 * const verify = federationVerifier(fed);
 * const refused = await Promise.resolve(verify({ leaf: new Uint8Array(0), chain: new Uint8Array(0) }))
 *   .catch((err) => err.code);
 * console.log(refused); // "CERT_UNTRUSTED"
 * ```
 */
export function federationVerifier(
  federation: Federation,
  opts: FederationVerifierOptions = {},
): PeerVerifier {
  if (typeof federation?.verifyPeer !== "function") {
    throw new TypeError(
      `Cannot build a verifier as 'federation' must be a Federation: current value is ${federation}`,
    );
  }
  const wanted = opts.serverName?.toLowerCase();
  const cacheMs = opts.cacheMs ?? 60_000;
  // Accepted chains, by the SHA-256 of their exact bytes: the verdict and until when it holds.
  const verdicts = new Map<string, { peer: VerifiedPeer; until: number }>();
  const verify = async (chain: Uint8Array[]): Promise<VerifiedPeer> => {
    if (cacheMs <= 0) return await federation.verifyPeer({ chain });
    const h = createHash("sha256");
    for (const der of chain) h.update(der);
    const key = h.digest("hex");
    const now = Date.now();
    const hit = verdicts.get(key);
    if (hit && now < hit.until) return hit.peer;
    const verified = await federation.verifyPeer({ chain });
    verdicts.delete(key);
    verdicts.set(key, {
      peer: verified,
      until: Math.min(now + cacheMs, verified.notAfter.getTime()),
    });
    if (verdicts.size > MAX_CACHED_VERDICTS) {
      verdicts.delete(verdicts.keys().next().value!);
    }
    return verified;
  };
  return async (peer) => {
    try {
      const chain = peerChain(peer);
      if (chain.length === 0) {
        throw new StoqError(
          "CERT_UNTRUSTED",
          "The peer sent no certificate: a federation certificate is required",
        );
      }
      const verified = await verify(chain);
      if (
        wanted !== undefined &&
        !verified.names.some((n) => n.toLowerCase() === wanted)
      ) {
        throw new StoqError(
          "CERT_UNTRUSTED",
          `The peer's certificate names ${
            verified.names.join(", ")
          }, not ${wanted}`,
        );
      }
      _verified.set(peer, verified);
      opts.onVerified?.(verified);
      return true;
    } catch (err) {
      const reason = err instanceof StoqError
        ? err
        : new StoqError("CERT_UNTRUSTED", String(err), { cause: err });
      opts.onRejected?.(reason);
      // Thrown, the reason reaches the handshake error (CERTIFICATE_REJECTED, with this cause).
      throw reason;
    }
  };
}

/**
 * Who the peer of a connection is, when a {@linkcode federationVerifier} accepted it.
 *
 * @param connection A connection made by {@linkcode connectWithFederation}, or accepted by a
 * listener from {@linkcode listenWithIdentity} with a federation.
 * @returns The verified peer, or `undefined` when the peer was not validated by a federation.
 *
 * @example Who the server is (see {@linkcode connectWithFederation} for the setup)
 * ```ts ignore
 * const conn = await connectWithFederation(endpoint, { hostname: "::1", port, alpnProtocols, federation });
 * console.log(peerIdentity(conn)?.serial);
 * ```
 */
export function peerIdentity(
  connection: StoqConnection,
): VerifiedPeer | undefined {
  const cert = connection?.peerCertificate;
  return cert ? _verified.get(cert) : undefined;
}

/** Options for {@linkcode connectWithFederation}. */
export interface FederatedConnectOptions
  extends Omit<StoqConnectOptions, "caCerts" | "verifyPeer" | "certificate"> {
  /** The federation the server's certificate must validate against. */
  federation: Federation;
  /**
   * This client's own certificate, for servers that require one (a `ProvisionedIdentity` fits).
   * @default {undefined}
   */
  identity?: StoqCertificate;
  /**
   * Called with the reason the server's certificate was refused.
   * @default {undefined}
   */
  onRejected?: (error: StoqError) => void;
}

function _isIpLiteral(host: string): boolean {
  return host.includes(":") || /^\d+(\.\d+){3}$/.test(host);
}

/**
 * Connects to a server whose certificate must validate against the federation (and carry
 * `serverName`, or `hostname` when that is a DNS name).
 *
 * @param endpoint The local endpoint.
 * @param opts Transport options, federation and optional client identity.
 * @returns The connection; {@linkcode peerIdentity} says which member issued the server's
 * certificate.
 * @throws {StoqError} `CERTIFICATE_REJECTED` when the server's certificate does not validate,
 * and the transport's connect errors.
 *
 * @example Connecting to a federated server
 * ```ts
 * import { CertificateAuthority, evidenceSource, Federation, MemoryCaStore } from "./mod.ts";
 * import { StoqEndpoint } from "../transport/mod.ts";
 * import { connectWithFederation, listenWithIdentity, peerIdentity } from "./binding.ts";
 * const ca = await CertificateAuthority.open({ name: "a", store: new MemoryCaStore() });
 * const bundle = { version: 1, members: [ca.member] };
 * const federation = await Federation.create(
 *   { bundle, signatures: [await ca.endorse(bundle)] },
 *   { source: evidenceSource(ca) },
 * );
 * await using endpoint = new StoqEndpoint({ hostname: "::1" });
 * using server = await listenWithIdentity(endpoint, {
 *   alpnProtocols: ["my-app"],
 *   provision: () => ca.provision("my-app"),
 * });
 * const conn = await connectWithFederation(endpoint, {
 *   hostname: "::1", port: server.addr.port, alpnProtocols: ["my-app"],
 *   serverName: "my-app.stoq.local", federation,
 * });
 * console.log(peerIdentity(conn)?.member); // "a"
 * ```
 */
export function connectWithFederation(
  endpoint: StoqEndpoint,
  opts: FederatedConnectOptions,
): Promise<StoqConnection> {
  const { federation, identity, onRejected, ...transport } = opts;
  let verifyPeer: PeerVerifier;
  try {
    const serverName = opts.serverName ??
      (typeof opts.hostname === "string" && !_isIpLiteral(opts.hostname)
        ? opts.hostname
        : undefined);
    verifyPeer = federationVerifier(federation, { serverName, onRejected });
  } catch (err) {
    return Promise.reject(err);
  }
  return endpoint.connect({
    ...transport,
    verifyPeer,
    ...(identity
      ? { certificate: { cert: identity.cert, key: identity.key } }
      : {}),
  });
}

/** Rotation settings for {@linkcode listenWithIdentity}. */
export interface IdentityRotationOptions {
  /**
   * Fraction of the lifetime after which to renew.
   * @default {2 / 3}
   */
  renewAt?: number;
  /**
   * Delay before retrying a failed renewal.
   * @default {30_000}
   */
  retryMs?: number;
  /**
   * Clock and timers.
   * @default {SYSTEM_CLOCK}
   */
  clock?: RotationClock;
  /**
   * Called when a renewal fails (the listener keeps its certificate and retries).
   * @default {undefined}
   */
  onError?: (error: unknown) => void;
}

/** Options for {@linkcode listenWithIdentity}. */
export interface IdentityListenOptions
  extends Omit<StoqListenOptions, "cert" | "key" | "caCerts" | "verifyPeer"> {
  /**
   * Gets a new identity, first and at each renewal: `() => ca.provision("my-app")` for a local
   * CA, `() => client.provision("my-app")` through a CA service.
   */
  provision: () => Promise<ProvisionedIdentity>;
  /**
   * The identity to start with.
   * @default {undefined} (provisions one)
   */
  identity?: ProvisionedIdentity;
  /**
   * Validates client certificates against this federation; makes them required unless
   * `requireClientCertificate` is `false`.
   * @default {undefined} (no client certificates)
   */
  federation?: Federation;
  /**
   * Automatic renewal settings, or `false` to renew only on {@linkcode IdentityListener.renew}.
   * @default {{}}
   */
  rotation?: IdentityRotationOptions | false;
  /**
   * Called with each identity the listener starts serving (the first one included).
   * @default {undefined}
   */
  onRenew?: (identity: ProvisionedIdentity) => void;
  /**
   * Called with the reason a client certificate was refused.
   * @default {undefined}
   */
  onRejected?: (error: StoqError) => void;
}

/**
 * A listener serving a TrustChain identity that renews itself: each renewal goes to
 * `setCertificate`, so new connections get the new certificate and live ones keep theirs.
 *
 * @example See {@linkcode listenWithIdentity}
 * ```ts ignore
 * using server = await listenWithIdentity(endpoint, { alpnProtocols: ["my-app"], provision });
 * for await (const conn of server) console.log(peerIdentity(conn));
 * ```
 */
export class IdentityListener
  implements AsyncIterable<StoqConnection>, Disposable {
  /** The transport listener. */
  readonly listener: StoqListener;
  readonly #rotator: CertificateRotator;
  readonly #auto: boolean;

  /** @internal Made by {@linkcode listenWithIdentity}. */
  constructor(
    listener: StoqListener,
    rotator: CertificateRotator,
    auto: boolean,
  ) {
    this.listener = listener;
    this.#rotator = rotator;
    this.#auto = auto;
  }

  /** The identity new connections get. */
  get identity(): ProvisionedIdentity {
    return this.#rotator.current!;
  }

  /** When the identity will be renewed (`undefined` with rotation off). */
  get renewsAt(): Date | undefined {
    return this.#auto ? this.#rotator.renewsAt : undefined;
  }

  /** The bound address. */
  get addr(): StoqAddr {
    return this.listener.addr;
  }

  /**
   * Renews the identity now; new connections get the new certificate, live ones keep theirs.
   *
   * @returns The new identity.
   */
  renew(): Promise<ProvisionedIdentity> {
    return this.#rotator.renewNow();
  }

  /** Waits for the next connection (validated, when a federation was given). */
  accept(): Promise<StoqConnection> {
    return this.listener.accept();
  }

  /** Yields connections as they are accepted, until the listener stops. */
  [Symbol.asyncIterator](): AsyncIterator<StoqConnection> {
    return this.listener[Symbol.asyncIterator]();
  }

  /** Stops renewing and stops accepting; live connections stay open. Idempotent. */
  close(): void {
    this.#rotator.close();
    this.listener.stop();
  }

  /** Same as {@linkcode IdentityListener.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Listens with a TrustChain identity that renews itself (at two thirds of its lifetime by
 * default), optionally requiring client certificates from a federation (mutual TLS).
 *
 * @param endpoint The local endpoint.
 * @param opts Transport options, how to provision, federation and rotation.
 * @returns The listener.
 * @throws {StoqError} The transport's listen errors and whatever `provision` throws.
 *
 * @example Serving a provisioned identity
 * ```ts
 * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
 * import { StoqEndpoint } from "../transport/mod.ts";
 * import { listenWithIdentity } from "./binding.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * await using endpoint = new StoqEndpoint({ hostname: "::1" });
 * using server = await listenWithIdentity(endpoint, {
 *   alpnProtocols: ["my-app"],
 *   provision: () => ca.provision("my-app"),
 * });
 * console.log(server.identity.names); // [ "my-app.stoq.local" ]
 * ```
 */
export async function listenWithIdentity(
  endpoint: StoqEndpoint,
  opts: IdentityListenOptions,
): Promise<IdentityListener> {
  const {
    provision,
    identity,
    federation,
    rotation = {},
    onRenew,
    onRejected,
    ...transport
  } = opts;
  if (typeof provision !== "function") {
    throw new TypeError(
      `Cannot listen with an identity as 'provision' must be a function: current value is ${provision}`,
    );
  }
  const first = identity ?? await provision();
  const verifyPeer = federation
    ? federationVerifier(federation, { onRejected })
    : undefined;
  const listener = endpoint.listen({
    ...transport,
    cert: first.cert,
    key: first.key,
    ...(verifyPeer
      ? {
        verifyPeer,
        requireClientCertificate: transport.requireClientCertificate ?? true,
      }
      : {}),
  });
  const auto = rotation !== false;
  const rotator = new CertificateRotator({
    provision,
    current: first,
    onRenew: (next) => {
      listener.setCertificate({ cert: next.cert, key: next.key });
      onRenew?.(next);
    },
    ...(auto
      ? {
        renewAt: rotation.renewAt,
        retryMs: rotation.retryMs,
        clock: rotation.clock,
        onError: rotation.onError,
      }
      : {}),
  });
  onRenew?.(first);
  if (auto) await rotator.start();
  return new IdentityListener(listener, rotator, auto);
}
