/**
 * The TrustChain certificate authority: an ECDSA P-256 root that issues short-lived leaf
 * certificates from CSRs under a strict policy, logs every certificate in its transparency log,
 * co-signs with Falcon-512, and answers revocation queries.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { StoqError } from "../errors.ts";
import {
  generateLogKeys,
  type LogKeys,
  type Sct,
  TransparencyLog,
  type TransparencyProof,
} from "./ct_log.ts";
import { openNote, parseCheckpoint } from "./checkpoint.ts";
import * as der from "./_der.ts";
import {
  FALCON_COSIGNATURE_OID,
  falconCertificateMessage,
  type FalconKeyPair,
  falconSign,
  generateFalconKeyPair,
} from "./falcon.ts";
import {
  type BundleSignature,
  type FederationMember,
  type PeerEvidenceSource,
  type TrustBundle,
  trustBundleMessage,
} from "./federation.ts";
import type { CaIdentityRecord, CaStore } from "./store.ts";
import {
  canonicalSerial as _serial,
  type RevocationReason,
  type SignedStatus,
  statusMessage,
} from "./status.ts";
import {
  buf,
  bytesToHex,
  concatBytes,
  fromBase64,
  hexToBytes,
  toBase64,
} from "./_bytes.ts";

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const EC_SIGN = {
  name: "ECDSA",
  namedCurve: "P-256",
  hash: "SHA-256",
} as const;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Options for {@linkcode CertificateAuthority.open}. */
export interface CertificateAuthorityOptions {
  /** Where the CA keeps its keys, certificates and log. */
  store: CaStore;
  /** The CA's name: root certificate CN and part of the log origin. No spaces or `+`. */
  name: string;
  /**
   * Names leaf certificates may carry: exact DNS names, or `*.suffix` patterns matching any name
   * that ends in `.suffix` (any depth).
   * @default {["*.stoq.local"]}
   */
  allowedNames?: string[];
  /**
   * Domain {@linkcode CertificateAuthority.provision} appends to an app name without a dot.
   * @default {"stoq.local"}
   */
  domain?: string;
  /**
   * Leaf lifetime when a request names none.
   * @default {86_400_000} (24 h)
   */
  defaultLifetimeMs?: number;
  /**
   * Longest leaf lifetime the CA signs.
   * @default {604_800_000} (7 days)
   */
  maxLifetimeMs?: number;
  /**
   * Root certificate lifetime, used only when the store is new.
   * @default {315_360_000_000} (10 years)
   */
  rootLifetimeMs?: number;
  /**
   * Whether leaves carry the Falcon-512 co-signature extension (costs one Falcon signature,
   * several milliseconds, per certificate).
   * @default {true}
   */
  falconCertificates?: boolean;
  /**
   * A checkpoint this CA published earlier (e.g. kept by a witness or peer). Opening fails with
   * `LOG_TAMPERED` unless the stored log still contains that tree. Without it, deleting the newest
   * entries, certificates and tree heads together cannot be told apart from a shorter log.
   */
  trustedCheckpoint?: string;
  /**
   * The clock.
   * @default {() => new Date()}
   */
  now?: () => Date;
}

/** Options for one issuance. */
export interface IssueOptions {
  /**
   * Requested lifetime in milliseconds.
   * @default {CertificateAuthorityOptions.defaultLifetimeMs}
   */
  lifetimeMs?: number;
  /**
   * Decides, after the policy checks and before anything is signed, whether the requester may
   * have these names (e.g. a CA service checking an enrollment token).
   * @default {undefined} (the policy alone decides)
   */
  authorize?: (names: string[]) => boolean | Promise<boolean>;
}

/** A certificate the CA issued. */
export interface IssuedCertificate {
  /** Serial number, lowercase hex. */
  serial: string;
  /** Leaf certificate DER. */
  der: Uint8Array;
  /** Leaf certificate PEM. */
  pem: string;
  /** Validity start. */
  notBefore: Date;
  /** Validity end. */
  notAfter: Date;
  /** The DNS names in the SAN. */
  names: string[];
  /** The transparency proof against the tree head signed at issuance. */
  proof: TransparencyProof;
}

/**
 * A ready-to-use identity: `cert` and `key` are what a STOQ endpoint takes.
 */
export interface ProvisionedIdentity extends IssuedCertificate {
  /** PEM chain: leaf, then root. */
  cert: string;
  /** PEM PKCS#8 private key of the leaf. */
  key: string;
  /** DER chain: leaf, then root. */
  chainDer: Uint8Array[];
}

const REASONS: Record<RevocationReason, x509.X509CrlReason> = {
  unspecified: x509.X509CrlReason.unspecified,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  cACompromise: x509.X509CrlReason.cACompromise,
  affiliationChanged: x509.X509CrlReason.affiliationChanged,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
};

function _checkLifetime(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(
      `Cannot use '${name}' as it must be a positive integer of milliseconds: current value is ${value}`,
    );
  }
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function _isDnsName(name: string): boolean {
  return name.length <= 253 && name.split(".").every((l) => DNS_LABEL.test(l));
}

/**
 * Whether a DNS name matches one of the allowed patterns (exact, or `*.suffix` for any name ending
 * in `.suffix`).
 *
 * @param name A lowercase DNS name.
 * @param allowed The allowed patterns.
 * @returns `true` when allowed.
 *
 * @example Suffix patterns
 * ```ts
 * import { nameAllowed } from "./ca.ts";
 * console.log(nameAllowed("a.b.stoq.local", ["*.stoq.local"])); // true
 * console.log(nameAllowed("stoq.local", ["*.stoq.local"])); // false
 * ```
 */
export function nameAllowed(name: string, allowed: readonly string[]): boolean {
  const n = name.toLowerCase();
  return allowed.some((p) => {
    const pattern = p.toLowerCase();
    return pattern.startsWith("*.")
      ? n.endsWith(pattern.slice(1))
      : n === pattern;
  });
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The checked contents of a CSR. */
interface _CheckedCsr {
  /** SubjectPublicKeyInfo DER. */
  spki: Uint8Array;
  names: string[];
}

/** Applies the issuance policy to a CSR; pure apart from signature verification. */
async function _checkCsr(
  csr: string | Uint8Array,
  allowed: readonly string[],
): Promise<_CheckedCsr> {
  let req: x509.Pkcs10CertificateRequest;
  try {
    req = new x509.Pkcs10CertificateRequest(
      typeof csr === "string" ? csr : buf(csr),
    );
  } catch (cause) {
    throw new StoqError(
      "CSR_MALFORMED",
      "Cannot parse the CSR: send a PKCS#10 request as PEM or DER",
      {
        cause,
      },
    );
  }
  let alg: { name?: string; namedCurve?: string };
  try {
    alg = req.publicKey.algorithm as typeof alg;
  } catch (cause) {
    throw new StoqError(
      "KEY_UNSUPPORTED",
      "The CSR's key algorithm is unknown: use ECDSA P-256",
      {
        cause,
      },
    );
  }
  const ok = (alg.name === "ECDSA" && alg.namedCurve === "P-256") ||
    alg.name === "Ed25519";
  if (!ok) {
    throw new StoqError(
      "KEY_UNSUPPORTED",
      `The CSR's key is ${alg.name}${
        alg.namedCurve ? ` ${alg.namedCurve}` : ""
      }: use ECDSA P-256 or Ed25519`,
    );
  }
  let valid = false;
  try {
    valid = await req.verify();
  } catch {
    valid = false;
  }
  if (!valid) {
    throw new StoqError(
      "CSR_BAD_SIGNATURE",
      "The CSR's signature does not verify: sign it with its own key",
    );
  }
  const names: string[] = [];
  let sanExt: x509.SubjectAlternativeNameExtension | undefined;
  try {
    const raw = req.extensions.find((e) => e.type === "2.5.29.17");
    if (raw) sanExt = new x509.SubjectAlternativeNameExtension(raw.rawData);
  } catch (cause) {
    throw new StoqError(
      "CSR_MALFORMED",
      "The CSR's subjectAltName cannot be parsed",
      { cause },
    );
  }
  for (const item of sanExt?.names.items ?? []) {
    if (item.type === "ip" && item.value.includes(".")) {
      throw new StoqError(
        "SAN_IPV4",
        `The CSR names IPv4 address ${item.value}: STOQ is IPv6-only, use DNS names`,
      );
    }
    if (item.type !== "dns") {
      throw new StoqError(
        "NAME_NOT_ALLOWED",
        `The CSR names a ${item.type} entry: only DNS names are issued`,
      );
    }
    names.push(item.value.toLowerCase());
  }
  if (names.length === 0) {
    const cn = req.subjectName.getField("CN")[0];
    if (cn) names.push(cn.toLowerCase());
  }
  if (names.length === 0) {
    throw new StoqError(
      "NAME_NOT_ALLOWED",
      "The CSR names nothing: add a DNS subjectAltName",
    );
  }
  _checkNames(names, allowed);
  return {
    spki: new Uint8Array(req.publicKey.rawData),
    names: [...new Set(names)],
  };
}

/** Throws unless every name is a DNS name the policy allows. */
function _checkNames(
  names: readonly string[],
  allowed: readonly string[],
): void {
  for (const name of names) {
    if (IPV4.test(name)) {
      throw new StoqError(
        "SAN_IPV4",
        `The CSR names IPv4 address ${name}: STOQ is IPv6-only, use DNS names`,
      );
    }
    if (!_isDnsName(name) || !nameAllowed(name, allowed)) {
      throw new StoqError(
        "NAME_NOT_ALLOWED",
        `The name ${
          JSON.stringify(name)
        } is not allowed by this CA: allowed are ${allowed.join(", ")}`,
      );
    }
  }
}

function _pem(der: Uint8Array, label: string): string {
  return x509.PemConverter.encode(buf(der), label);
}

/** Throws LOG_TAMPERED unless entries, tree heads and certificate rows agree and verify. */
async function _verifyLog(
  log: TransparencyLog,
  heads: string[],
  certs: { serial: string; leafIndex: number }[],
  entries: Uint8Array[],
): Promise<string | undefined> {
  const tampered = (why: string) =>
    new StoqError(
      "LOG_TAMPERED",
      `The CA's log fails verification (${why}): restore it from a backup`,
    );
  let last = 0;
  for (const head of heads) {
    let size: number;
    let root: Uint8Array;
    try {
      const { body } = await openNote(head, log.verifiers);
      ({ treeSize: size, rootHash: root } = parseCheckpoint(body));
    } catch (cause) {
      throw new StoqError(
        "LOG_TAMPERED",
        "A stored tree head does not verify: restore from a backup",
        {
          cause,
        },
      );
    }
    if (size <= last || size > log.size) {
      throw tampered(`tree head of size ${size} out of order`);
    }
    if (bytesToHex(log.root(size)) !== bytesToHex(root)) {
      throw tampered(`root of size ${size} does not match the entries`);
    }
    last = size;
  }
  // Each issuance writes entry and tree head together, so the last head covers every entry.
  if (last !== log.size) {
    throw tampered(
      `last tree head has size ${last}, log has ${log.size} entries`,
    );
  }
  if (certs.length !== log.size) {
    throw tampered(`${certs.length} certificates, ${log.size} entries`);
  }
  for (const c of certs) {
    let serial: string | undefined;
    try {
      serial = _serial(
        new x509.X509Certificate(buf(entries[c.leafIndex])).serialNumber,
      );
    } catch {
      serial = undefined;
    }
    if (serial !== c.serial) {
      throw tampered(`entry ${c.leafIndex} is not certificate ${c.serial}`);
    }
  }
  return heads.at(-1);
}

/** Throws LOG_TAMPERED unless the log still holds the tree of a checkpoint it signed earlier. */
async function _checkTrusted(
  log: TransparencyLog,
  checkpoint: string,
): Promise<void> {
  let head;
  try {
    head = parseCheckpoint((await openNote(checkpoint, log.verifiers)).body);
  } catch (cause) {
    throw new StoqError(
      "LOG_TAMPERED",
      "The trusted checkpoint is not signed by this CA's log",
      {
        cause,
      },
    );
  }
  if (
    head.treeSize > log.size ||
    bytesToHex(log.root(head.treeSize)) !== bytesToHex(head.rootHash)
  ) {
    throw new StoqError(
      "LOG_TAMPERED",
      `The log no longer contains the trusted checkpoint of size ${head.treeSize}: restore it from a backup`,
    );
  }
}

/**
 * A new P-256 key pair and a CSR for one DNS name (internal: shared with the service client).
 *
 * @param name The DNS name.
 * @returns The CSR (DER) and the private key (PKCS#8 PEM).
 */
export async function _createKeyAndCsr(
  name: string,
): Promise<{ csr: Uint8Array; key: string; spki: Uint8Array }> {
  const k = await _newKey();
  return { csr: await der.buildCsr(name, k.spki, k.privateKey), ...k };
}

/** A new P-256 key pair: SPKI DER, PKCS#8 PEM and the WebCrypto private key. */
async function _newKey(): Promise<
  { spki: Uint8Array; key: string; privateKey: CryptoKey }
> {
  const keys = await crypto.subtle.generateKey(EC, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const [point, pkcs8] = await Promise.all([
    crypto.subtle.exportKey("raw", keys.publicKey),
    crypto.subtle.exportKey("pkcs8", keys.privateKey),
  ]);
  return {
    spki: der.p256Spki(new Uint8Array(point)),
    key: _pem(new Uint8Array(pkcs8), "PRIVATE KEY"),
    privateKey: keys.privateKey,
  };
}

/**
 * A certificate authority with its transparency log.
 *
 * @example Provisioning an app identity for a STOQ listener
 * ```ts
 * import { CertificateAuthority, SqliteCaStore } from "./mod.ts";
 * const dir = await Deno.makeTempDir();
 * const ca = await CertificateAuthority.open({ name: "ca-1", store: new SqliteCaStore(`${dir}/ca.db`) });
 * const { cert, key, proof } = await ca.provision("my-app");
 * console.log(cert.includes("BEGIN CERTIFICATE"), key.includes("PRIVATE KEY"), proof.leafIndex); // true true 0
 * ca.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class CertificateAuthority {
  /** The CA name. */
  readonly name: string;
  readonly #root: x509.X509Certificate;
  readonly #store: CaStore;
  readonly #rootKey: CryptoKey;
  readonly #falcon: FalconKeyPair;
  readonly #logKeys: LogKeys;
  #log: TransparencyLog;
  #lastHead: string | undefined;
  readonly #allowed: readonly string[];
  readonly #domain: string;
  readonly #defaultLifetime: number;
  readonly #maxLifetime: number;
  readonly #falconCerts: boolean;
  readonly #now: () => Date;
  #queue: Promise<unknown> = Promise.resolve();
  #fixedExtensions: Uint8Array | undefined;
  readonly #issuer: Uint8Array;
  #closed = false;

  private constructor(
    opts: CertificateAuthorityOptions,
    state: {
      root: x509.X509Certificate;
      rootKey: CryptoKey;
      logKeys: LogKeys;
      log: TransparencyLog;
      lastHead?: string;
    },
  ) {
    this.name = opts.name;
    this.#store = opts.store;
    this.#root = state.root;
    this.#issuer = new Uint8Array(state.root.subjectName.toArrayBuffer());
    this.#rootKey = state.rootKey;
    this.#logKeys = state.logKeys;
    this.#falcon = state.logKeys.falcon;
    this.#log = state.log;
    this.#lastHead = state.lastHead;
    this.#allowed = [...(opts.allowedNames ?? ["*.stoq.local"])];
    this.#domain = opts.domain ?? "stoq.local";
    this.#defaultLifetime = opts.defaultLifetimeMs ?? DAY;
    this.#maxLifetime = opts.maxLifetimeMs ?? 7 * DAY;
    this.#falconCerts = opts.falconCertificates ?? true;
    this.#now = opts.now ?? (() => new Date());
  }

  /**
   * Opens the CA in `store`, creating its root, log and Falcon keys when the store is new. An
   * existing log is verified: every stored tree head must verify and match the entries.
   *
   * @param opts The CA options.
   * @returns The CA.
   * @throws {StoqError} `LOG_TAMPERED` when the stored log fails verification; `STORE_ERROR` when
   * the store belongs to a CA of another name.
   */
  static async open(
    opts: CertificateAuthorityOptions,
  ): Promise<CertificateAuthority> {
    if (
      typeof opts?.name !== "string" || !/^[A-Za-z0-9._-]+$/.test(opts.name)
    ) {
      throw new TypeError(
        `Cannot open CA as 'name' must match [A-Za-z0-9._-]+: current value is ${opts?.name}`,
      );
    }
    if (!opts.store) {
      throw new TypeError(
        "Cannot open CA as 'store' is missing: pass a CaStore",
      );
    }
    _checkLifetime("defaultLifetimeMs", opts.defaultLifetimeMs ?? DAY);
    _checkLifetime("maxLifetimeMs", opts.maxLifetimeMs ?? 7 * DAY);
    const now = opts.now ?? (() => new Date());
    const origin = `stoq.trustchain/${opts.name}`;
    let record = await opts.store.loadIdentity();
    if (!record) {
      record = await CertificateAuthority.#createIdentity(opts, origin, now());
      await opts.store.saveIdentity(record);
    }
    if (record.name !== opts.name) {
      throw new StoqError(
        "STORE_ERROR",
        `This store holds CA ${record.name}, not ${opts.name}`,
      );
    }
    const rootKey = await crypto.subtle.importKey(
      "pkcs8",
      buf(fromBase64(record.rootKey)),
      EC,
      false,
      [
        "sign",
      ],
    );
    const ed25519Public = fromBase64(record.logPublicKey);
    const logKeys: LogKeys = {
      ed25519: {
        privateKey: await crypto.subtle.importKey(
          "pkcs8",
          buf(fromBase64(record.logKey)),
          "Ed25519",
          false,
          [
            "sign",
          ],
        ),
        publicKey: await crypto.subtle.importKey(
          "raw",
          buf(ed25519Public),
          "Ed25519",
          true,
          ["verify"],
        ),
      },
      ed25519Public,
      falcon: {
        secretKey: fromBase64(record.falconSecretKey),
        publicKey: fromBase64(record.falconPublicKey),
      },
    };
    const entries = await opts.store.entries();
    const log = new TransparencyLog(record.origin, logKeys, entries);
    const lastHead = await _verifyLog(
      log,
      await opts.store.treeHeads(),
      await opts.store.certificates(),
      entries,
    );
    if (opts.trustedCheckpoint !== undefined) {
      await _checkTrusted(log, opts.trustedCheckpoint);
    }
    const root = new x509.X509Certificate(buf(fromBase64(record.rootDer)));
    return new CertificateAuthority(opts, {
      root,
      rootKey,
      logKeys,
      log,
      lastHead,
    });
  }

  static async #createIdentity(
    opts: CertificateAuthorityOptions,
    origin: string,
    now: Date,
  ): Promise<CaIdentityRecord> {
    const keys = await crypto.subtle.generateKey(EC, true, [
      "sign",
      "verify",
    ]) as CryptoKeyPair;
    const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const root = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: bytesToHex(crypto.getRandomValues(new Uint8Array(16))),
      name: `CN=${opts.name}, O=STOQ TrustChain`,
      notBefore,
      notAfter: new Date(
        notBefore.getTime() + (opts.rootLifetimeMs ?? 3650 * DAY),
      ),
      keys,
      signingAlgorithm: EC_SIGN,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign |
            x509.KeyUsageFlags.digitalSignature,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const logKeys = await generateLogKeys(generateFalconKeyPair());
    const pkcs8 = async (k: CryptoKey) =>
      toBase64(new Uint8Array(await crypto.subtle.exportKey("pkcs8", k)));
    return {
      name: opts.name,
      origin,
      rootDer: toBase64(new Uint8Array(root.rawData)),
      rootKey: await pkcs8(keys.privateKey),
      logKey: await pkcs8(logKeys.ed25519.privateKey),
      logPublicKey: toBase64(logKeys.ed25519Public),
      falconSecretKey: toBase64(logKeys.falcon.secretKey),
      falconPublicKey: toBase64(logKeys.falcon.publicKey),
    };
  }

  /** The domain {@linkcode CertificateAuthority.provision} appends to bare app names. */
  get domain(): string {
    return this.#domain;
  }

  /** The root certificate DER. */
  get rootDer(): Uint8Array {
    return new Uint8Array(this.#root.rawData);
  }

  /** The root certificate PEM. */
  get rootPem(): string {
    return this.#root.toString("pem");
  }

  /** The Falcon-512 public key that co-signs certificates and checkpoints. */
  get falconPublicKey(): Uint8Array {
    return this.#falcon.publicKey.slice();
  }

  /** The transparency log (read-only use: proofs, roots, vkeys). */
  get log(): TransparencyLog {
    return this.#log;
  }

  /** The latest signed tree head (checkpoint note, Ed25519 only), if anything was issued. */
  get treeHead(): string | undefined {
    return this.#lastHead;
  }

  /** This CA as a federation member: root certificate and log keys. */
  get member(): FederationMember {
    return {
      name: this.name,
      root: toBase64(this.rootDer),
      origin: this.#log.origin,
      logKey: this.#log.vkeys.ed25519,
      falconKey: this.#log.vkeys.falcon,
    };
  }

  #check(): void {
    if (this.#closed) {
      throw new StoqError("CLOSED", `CA ${this.name} is closed: open it again`);
    }
  }

  // Issuances run one at a time so log order matches store order.
  #serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  /**
   * Issues a leaf certificate from a CSR, logs it and returns it with its transparency proof.
   *
   * A refusal throws before anything is written, so the CA's state is unchanged.
   *
   * @param csr A PKCS#10 request, PEM or DER.
   * @param opts Issuance options.
   * @returns The certificate and proof.
   * @throws {StoqError} `CSR_MALFORMED`, `CSR_BAD_SIGNATURE`, `KEY_UNSUPPORTED`, `SAN_IPV4`,
   * `NAME_NOT_ALLOWED`, `LIFETIME_TOO_LONG`, `UNAUTHORIZED` (refused by `opts.authorize`), or
   * `STORE_ERROR`.
   *
   * @example Refusing a long lifetime
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * await ca.issue("not a csr").catch((e) => console.log(e.code)); // "CSR_MALFORMED"
   * ```
   */
  issue(
    csr: string | Uint8Array,
    opts: IssueOptions = {},
  ): Promise<IssuedCertificate> {
    this.#check();
    if (typeof csr !== "string" && !(csr instanceof Uint8Array)) {
      return Promise.reject(
        new TypeError(
          "Cannot issue as 'csr' must be a PEM string or DER bytes",
        ),
      );
    }
    return this.#serialize(() => this.#issue(csr, opts));
  }

  async #issue(
    csr: string | Uint8Array,
    opts: IssueOptions,
  ): Promise<IssuedCertificate> {
    const lifetime = opts.lifetimeMs ?? this.#defaultLifetime;
    _checkLifetime("lifetimeMs", lifetime);
    const checked = await _checkCsr(csr, this.#allowed);
    return await this.#issueChecked(checked, lifetime, opts);
  }

  /** Signs, logs and commits a certificate for a key and names that passed the CSR checks. */
  async #issueChecked(
    { spki, names }: _CheckedCsr,
    lifetime: number,
    opts: IssueOptions,
  ): Promise<IssuedCertificate> {
    if (lifetime > this.#maxLifetime) {
      throw new StoqError(
        "LIFETIME_TOO_LONG",
        `Requested lifetime ${lifetime} ms exceeds this CA's maximum ${this.#maxLifetime} ms: ask for less`,
      );
    }
    if (opts.authorize && !(await opts.authorize([...names]))) {
      throw new StoqError(
        "UNAUTHORIZED",
        `The requester may not have ${names.join(", ")}: check its credentials`,
      );
    }
    // X.509 times have one-second precision; truncate so the Falcon message matches the cert.
    const notBefore = new Date(Math.floor(this.#now().getTime() / 1000) * 1000);
    const notAfter = new Date(notBefore.getTime() + lifetime);
    let serial: string;
    do {
      const bytes = crypto.getRandomValues(new Uint8Array(16));
      serial = bytesToHex(bytes).replace(/^0+/, "") || "1";
    } while (await this.#store.certificate(serial));
    const fixed = this.#fixedExtensions ??= await this.#buildFixedExtensions();
    const subject = der.cnName(names[0]);
    const san = der.sanValue(names);
    const keyId = der.keyIdentifier(spki) ?? hexToBytes(
      (await x509.SubjectKeyIdentifierExtension.create(
        new x509.PublicKey(buf(spki)),
      )).keyId,
    );
    const extensions = [
      fixed,
      der.extension("2.5.29.17", false, san),
      der.extension("2.5.29.14", false, der.octets(keyId)),
    ];
    if (this.#falconCerts) {
      const message = falconCertificateMessage({
        spki,
        serial,
        notBefore,
        notAfter,
        subject,
        issuer: this.#issuer,
        san,
      });
      extensions.push(der.extension(
        FALCON_COSIGNATURE_OID,
        false,
        der.octets(falconSign(message, this.#falcon.secretKey)),
      ));
    }
    const tbs = der.seq(
      der.tlv(0xa0, der.uint(new Uint8Array([2]))),
      der.serialInteger(serial),
      der.ECDSA_SHA256,
      this.#issuer,
      der.seq(der.time(notBefore), der.time(notAfter)),
      subject,
      spki,
      der.tlv(0xa3, der.seq(...extensions)),
    );
    const signature = new Uint8Array(
      await crypto.subtle.sign(EC_SIGN, this.#rootKey, buf(tbs)),
    );
    const cert = der.seq(
      tbs,
      der.ECDSA_SHA256,
      der.bits(der.ecdsaDer(signature)),
    );
    return await this.#append(cert, serial, notBefore, notAfter, names);
  }

  /** basicConstraints, keyUsage, extKeyUsage and authorityKeyIdentifier, DER, shared by all leaves. */
  async #buildFixedExtensions(): Promise<Uint8Array> {
    const aki = await x509.AuthorityKeyIdentifierExtension.create(this.#root);
    return concatBytes(
      der.extension("2.5.29.19", true, der.seq()),
      der.extension(
        "2.5.29.15",
        true,
        der.tlv(0x03, new Uint8Array([7, 0x80])),
      ),
      der.extension(
        "2.5.29.37",
        false,
        der.seq(der.oid("1.3.6.1.5.5.7.3.1"), der.oid("1.3.6.1.5.5.7.3.2")),
      ),
      new Uint8Array(aki.rawData),
    );
  }

  async #append(
    cert: Uint8Array,
    serial: string,
    notBefore: Date,
    notAfter: Date,
    names: string[],
  ): Promise<IssuedCertificate> {
    const index = this.#log.append(cert);
    let sct: Sct;
    let head: string;
    try {
      // Two independent Ed25519 signatures; WebCrypto runs them off the main thread.
      [sct, head] = await Promise.all([
        this.#log.sct(cert, index, this.#now().getTime()),
        this.#log.signTreeHead(),
      ]);
      await this.#store.commitIssuance(
        { serial, leafIndex: index, notAfter: notAfter.getTime(), sct },
        cert,
        head,
      );
    } catch (err) {
      // The store refused: rebuild the in-memory log from what was actually committed.
      this.#log = new TransparencyLog(
        this.#log.origin,
        this.#logKeys,
        await this.#store.entries(),
      );
      throw err;
    }
    this.#lastHead = head;
    return {
      serial,
      der: cert,
      pem: _pem(cert, "CERTIFICATE"),
      notBefore,
      notAfter,
      names,
      proof: this.#log.proof(index, head, sct),
    };
  }

  /**
   * Provisions an app or node on this machine: a new P-256 key pair, issuance and the
   * transparency proof. The CA makes the key itself, so there is no request to verify; apps on
   * other machines send a CSR to {@linkcode CertificateAuthority.issue} (see `TrustChainClient`).
   *
   * @param app An app name (`my-app` becomes `my-app.<domain>`) or a full DNS name.
   * @param opts Issuance options.
   * @returns `{ cert, key }` ready for a STOQ endpoint, plus the DER chain and proof.
   *
   * @example Provisioning
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * const id = await ca.provision("my-app");
   * console.log(id.names); // [ "my-app.stoq.local" ]
   * ```
   */
  async provision(
    app: string,
    opts: IssueOptions = {},
  ): Promise<ProvisionedIdentity> {
    this.#check();
    if (typeof app !== "string" || app.length === 0) {
      throw new TypeError(
        `Cannot provision as 'app' must be a non-empty name: current value is ${app}`,
      );
    }
    const name = (app.includes(".") ? app : `${app}.${this.#domain}`)
      .toLowerCase();
    const lifetime = opts.lifetimeMs ?? this.#defaultLifetime;
    _checkLifetime("lifetimeMs", lifetime);
    _checkNames([name], this.#allowed);
    const { spki, key } = await _newKey();
    const issued = await this.#serialize(() =>
      this.#issueChecked({ spki, names: [name] }, lifetime, opts)
    );
    return {
      ...issued,
      cert: `${issued.pem}\n${this.rootPem}\n`,
      key,
      chainDer: [issued.der, this.rootDer],
    };
  }

  /**
   * A fresh transparency proof for an issued certificate, against the latest tree head.
   *
   * @param serial The serial number (hex).
   * @returns The proof, or `undefined` when this CA never issued the serial.
   *
   * @example Looking up a proof
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * const id = await ca.provision("app");
   * console.log((await ca.proof(id.serial))?.leafIndex); // 0
   * ```
   */
  async proof(serial: string): Promise<TransparencyProof | undefined> {
    this.#check();
    const rec = await this.#store.certificate(_serial(serial));
    if (!rec || !this.#lastHead) return undefined;
    return this.#log.proof(rec.leafIndex, this.#lastHead, rec.sct);
  }

  /**
   * Revokes a certificate this CA issued. Idempotent: the first revocation stays.
   *
   * @param serial The serial number (hex).
   * @param reason The RFC 5280 reason.
   * @throws {RangeError} When this CA never issued `serial`.
   *
   * @example Revoking
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * const id = await ca.provision("app");
   * await ca.revoke(id.serial, "keyCompromise");
   * console.log((await ca.status(id.serial)).status); // "revoked"
   * ```
   */
  async revoke(
    serial: string,
    reason: RevocationReason = "unspecified",
  ): Promise<void> {
    this.#check();
    if (!(reason in REASONS)) {
      throw new RangeError(
        `Cannot revoke as 'reason' must be an RFC 5280 reason name: current value is ${reason}`,
      );
    }
    const s = _serial(serial);
    if (!(await this.#store.certificate(s))) {
      throw new RangeError(
        `Cannot revoke serial ${serial}: this CA never issued it`,
      );
    }
    await this.#store.revoke({
      serial: s,
      reason,
      revokedAt: this.#now().getTime(),
    });
  }

  /**
   * A signed status answer for a serial, for peers to check revocation.
   *
   * @param serial The serial number (hex).
   * @returns The status signed by the root key (see `verifyStatus`).
   *
   * @example Status of an unknown serial
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * console.log((await ca.status("abcd")).status); // "unknown"
   * ```
   */
  async status(serial: string): Promise<SignedStatus> {
    this.#check();
    const s = _serial(serial);
    const rev = await this.#store.revocation(s);
    const known = rev !== undefined ||
      (await this.#store.certificate(s)) !== undefined;
    const unsigned: Omit<SignedStatus, "signature"> = {
      issuer: this.name,
      serial: s,
      status: rev ? "revoked" : known ? "good" : "unknown",
      producedAt: this.#now().getTime(),
      ...(rev
        ? { reason: rev.reason as RevocationReason, revokedAt: rev.revokedAt }
        : {}),
    };
    const sig = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      this.#rootKey,
      buf(statusMessage(unsigned)),
    );
    return { ...unsigned, signature: toBase64(new Uint8Array(sig)) };
  }

  /**
   * The signed X.509 revocation list (CRL), valid for one hour.
   *
   * @returns The CRL as PEM.
   *
   * @example Listing revocations
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * console.log((await ca.revocationList()).includes("BEGIN X509 CRL")); // true
   * ```
   */
  async revocationList(): Promise<string> {
    this.#check();
    const now = this.#now();
    const crl = await x509.X509CrlGenerator.create({
      issuer: this.#root.subjectName,
      thisUpdate: now,
      nextUpdate: new Date(now.getTime() + HOUR),
      entries: (await this.#store.revocations()).map((r) => ({
        serialNumber: r.serial.length % 2 ? `0${r.serial}` : r.serial,
        revocationDate: new Date(r.revokedAt),
        reason: REASONS[r.reason as RevocationReason] ??
          x509.X509CrlReason.unspecified,
      })),
      signingKey: this.#rootKey,
      signingAlgorithm: EC_SIGN,
    });
    // OpenSSL and RFC 7468 label CRLs "X509 CRL".
    return _pem(new Uint8Array(crl.rawData), "X509 CRL");
  }

  /**
   * Publishes the current tree head as a C2SP checkpoint co-signed with Falcon-512.
   *
   * @returns The signed note (an Ed25519 line, then a Falcon line).
   *
   * @example Publishing a checkpoint
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * await ca.provision("app");
   * console.log((await ca.checkpoint()).split("\n")[1]); // "1"
   * ```
   */
  checkpoint(): Promise<string> {
    this.#check();
    return this.#log.checkpoint();
  }

  /**
   * Endorses a trust bundle with this CA's root key, for federation updates.
   *
   * @param bundle The bundle to sign.
   * @returns This CA's signature entry.
   *
   * @example See `Federation`
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * const sig = await ca.endorse({ version: 1, members: [ca.member] });
   * console.log(sig.member); // "demo"
   * ```
   */
  async endorse(bundle: TrustBundle): Promise<BundleSignature> {
    this.#check();
    const sig = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      this.#rootKey,
      buf(trustBundleMessage(bundle)),
    );
    return { member: this.name, signature: toBase64(new Uint8Array(sig)) };
  }

  /** Closes the CA and its store; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#store.close();
  }

  /** Same as {@linkcode CertificateAuthority.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A {@linkcode PeerEvidenceSource} backed by local CAs: proofs and signed statuses by member name.
 *
 * @param cas The CAs to serve evidence for.
 * @returns The source.
 *
 * @example Looking proofs up instead of sending them
 * ```ts
 * import { CertificateAuthority, evidenceSource, Federation, MemoryCaStore } from "./mod.ts";
 * const a = await CertificateAuthority.open({ name: "a", store: new MemoryCaStore() });
 * const bundle = { version: 1, members: [a.member] };
 * const fed = await Federation.create({ bundle, signatures: [await a.endorse(bundle)] }, { source: evidenceSource(a) });
 * const id = await a.provision("app");
 * console.log((await fed.verifyPeer({ chain: id.chainDer })).serial === id.serial); // true
 * ```
 */
export function evidenceSource(
  ...cas: CertificateAuthority[]
): PeerEvidenceSource {
  const find = (member: string) => cas.find((c) => c.name === member);
  return {
    proof: async (member, serial) => await find(member)?.proof(serial),
    status: async (member, serial) => await find(member)?.status(serial),
  };
}
