/**
 * The TrustChain certificate authority: an ECDSA P-256 root that issues short-lived leaf
 * certificates under a strict policy, logs each one in its RFC 6962 transparency log first (the
 * precertificate flow: precertificate with the poison extension logged, SCT received, final
 * certificate issued with the SCT embedded), co-signs with Falcon-512, and answers revocation
 * queries.
 *
 * This module orchestrates; the work is done by pure functions in `core/` (policy, leaf
 * assembly, RFC 6962 structures, the log, Falcon, status, federation) and by the
 * {@linkcode CaStore} given to it.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import { StoqError } from "../errors.ts";
import {
  caTampered,
  checkCertificateMac,
  entryIsCertificate,
} from "./core/audit.ts";
import { LogSigner, type TransparencyProof } from "./core/ct_log.ts";
import { falconCertificateMessage, FalconSigner } from "./core/falcon.ts";
import {
  type BundleSignature,
  endorseBundle,
  type FederationMember,
  type PeerEvidenceSource,
  type TrustBundle,
} from "./core/federation.ts";
import {
  type CaIdentity,
  checkFalconPair,
  createIdentityRecord,
  decodeIdentityRecord,
  decodeLegacyIdentity,
  encodeIdentityRecord,
  loadIdentity,
} from "./core/identity.ts";
import {
  certificateMac,
  chainRevocation,
  EMPTY_CHAIN,
  entryMac,
  type RevocationSeal,
  revocationSealMessage,
  sealVerifies,
} from "./core/integrity.ts";
import { type KeySecret, MIN_KEY_FILE_BYTES } from "./core/key_wrap.ts";
import { newP256Key, pem } from "./core/keys.ts";
import {
  falconFields,
  leafExtensions,
  leafParts,
  leafTbs,
  type LeafTemplate,
  newSerial,
  signedCertificate,
} from "./core/leaf.ts";
import {
  checkCsr,
  type CheckedRequest,
  checkLifetime,
  checkNames,
  type CsrLimits,
  DEFAULT_CSR_LIMITS,
} from "./core/policy.ts";
import { type RandomSource, SYSTEM_RANDOM } from "./core/random.ts";
import {
  importLogKey,
  parseTileLeaf,
  POISON_EXTENSION,
  type PrecertEntry,
  sctListExtension,
  tileLeaf,
  timestampedEntry,
  verifySctSignature,
} from "./core/rfc6962.ts";
import {
  buildRevocationList,
  canonicalSerial,
  isRevocationReason,
  type RevocationReason,
  type SignedStatus,
  signStatus,
} from "./core/status.ts";
import { migrateLegacyStore } from "./migrate.ts";
import { type LogAudit, StoredLog } from "./stored_log.ts";
import type {
  CaStore,
  CertificateRecord,
  RevocationRecord,
} from "./store/store.ts";
import { bytesToHex, fromBase64, toBase64 } from "./core/_bytes.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Options for {@linkcode CertificateAuthority.open}. */
export interface CertificateAuthorityOptions {
  /** Where the CA keeps its keys, certificates and log. */
  store: CaStore;
  /**
   * The CA's name: root certificate CN and part of the log origin; `[A-Za-z0-9._-]`, at most
   * 64 characters (RFC 5280's bound on a common name).
   */
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
   * Whether leaves carry the Falcon-512 co-signature extension (one native Falcon signature per
   * certificate, about 0.1 ms with AVX2).
   * @default {true}
   */
  falconCertificates?: boolean;
  /**
   * A checkpoint this CA published earlier (e.g. kept by a witness or peer). Opening fails with
   * `LOG_TAMPERED` unless the stored log still contains that tree.
   * @default {undefined}
   */
  trustedCheckpoint?: string;
  /**
   * What opening verifies. `"state"`: the identity record's seal and key pairs, the revocation
   * chain and its seal, the committed tree state (its MAC and compact range) and the latest tree
   * head: O(log n) rows plus the revocations, whatever the log's size; entries, certificate
   * records and SCTs are then verified each time they are read. `"full"`: also every entry, node,
   * tree head, certificate record and SCT ({@linkcode CertificateAuthority.audit}), O(n).
   * @default {"state"}
   */
  verify?: "state" | "full";
  /**
   * Wraps the CA's private keys at rest (root, log and Falcon keys) with this passphrase: scrypt
   * (N = 2^15, r = 8, p = 1), then AES-256-GCM. Given when the CA is created; needed at every
   * open (`CA_LOCKED` without it or with a wrong one). Exclusive with `keyFile`.
   * @default {undefined} (keys stored in the clear; the store's own access control protects them)
   */
  passphrase?: string;
  /**
   * Wraps the CA's private keys at rest with a key file instead of a passphrase: at least 32
   * random bytes (e.g. `head -c 32 /dev/urandom > ca.key`), through HKDF-SHA256 and AES-256-GCM.
   * Exclusive with `passphrase`.
   * @default {undefined}
   */
  keyFile?: string | URL;
  /**
   * The largest CSR {@linkcode CertificateAuthority.issue} accepts, in DER bytes (`CSR_TOO_LARGE`
   * beyond; checked before decoding).
   * @default {16384}
   */
  maxCsrBytes?: number;
  /**
   * The most subjectAltName entries a CSR may carry (`TOO_MANY_SANS` beyond).
   * @default {100}
   */
  maxSans?: number;
  /**
   * The clock.
   * @default {() => new Date()}
   */
  now?: () => Date;
  /**
   * The random source for serials and Falcon-512 (nonces, sampler seeds, key generation).
   * @default {SYSTEM_RANDOM}
   */
  random?: RandomSource;
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
  /**
   * The transparency proof against the tree head signed at issuance; its SCT is the one the
   * certificate embeds.
   */
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

/** What {@linkcode CertificateAuthority.audit} checked. */
export interface CaAudit extends LogAudit {
  /** Certificate records whose MAC, SCT signature and log entry were checked. */
  certificates: number;
  /** Revocations checked against the root-signed revocation chain. */
  revocations: number;
}

/** The most times a revocation is retried when other processes revoke at the same moment. */
const REVOKE_ATTEMPTS = 16;

async function _keySecret(
  opts: CertificateAuthorityOptions,
): Promise<KeySecret | undefined> {
  const { passphrase, keyFile } = opts;
  if (passphrase !== undefined && keyFile !== undefined) {
    throw new TypeError(
      "Cannot open CA as 'passphrase' and 'keyFile' exclude each other: pass one",
    );
  }
  if (passphrase !== undefined) {
    if (typeof passphrase !== "string" || passphrase.length === 0) {
      throw new TypeError(
        "Cannot open CA as 'passphrase' must be a non-empty string",
      );
    }
    return { passphrase };
  }
  if (keyFile === undefined) return undefined;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(keyFile);
  } catch (cause) {
    throw new StoqError(
      "CA_LOCKED",
      `Cannot read the key file ${keyFile}: check the path and its permissions`,
      { cause },
    );
  }
  if (bytes.length < MIN_KEY_FILE_BYTES) {
    throw new StoqError(
      "CA_LOCKED",
      `The key file ${keyFile} holds ${bytes.length} bytes: it needs at least ${MIN_KEY_FILE_BYTES} random bytes`,
    );
  }
  return { keyFile: bytes };
}

function _positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot open CA as '${name}' must be a positive integer: current value is ${value}`,
    );
  }
  return value;
}

/**
 * A certificate authority with its transparency log. Several processes may open the same CA on one
 * shared store (`PostgresCaStore`): the store sequences their issuances into one log.
 *
 * @example Provisioning an app identity for a STOQ listener
 * ```ts
 * import { CertificateAuthority, SqliteCaStore } from "./mod.ts";
 * const dir = await Deno.makeTempDir();
 * const ca = await CertificateAuthority.open({ name: "ca-1", store: new SqliteCaStore(`${dir}/ca.db`) });
 * const { cert, key, proof } = await ca.provision("my-app");
 * console.log(cert.includes("BEGIN CERTIFICATE"), key.includes("PRIVATE KEY"), proof.leafIndex); // true true 0
 * await ca.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class CertificateAuthority implements AsyncDisposable {
  /** The CA name. */
  readonly name: string;
  readonly #id: CaIdentity;
  readonly #store: CaStore;
  readonly #falcon: FalconSigner;
  readonly #signer: LogSigner;
  readonly #log: StoredLog;
  readonly #allowed: readonly string[];
  readonly #domain: string;
  readonly #defaultLifetime: number;
  readonly #maxLifetime: number;
  readonly #falconCerts: boolean;
  readonly #limits: CsrLimits;
  readonly #now: () => Date;
  readonly #random: RandomSource;
  // The verified revocations and the seal they were verified against.
  #revoked = new Map<string, RevocationRecord>();
  #seal: RevocationSeal | undefined;
  #closing: Promise<void> | undefined;

  private constructor(
    opts: CertificateAuthorityOptions,
    state: {
      id: CaIdentity;
      falcon: FalconSigner;
      signer: LogSigner;
      log: StoredLog;
    },
  ) {
    this.name = opts.name;
    this.#store = opts.store;
    this.#id = state.id;
    this.#falcon = state.falcon;
    this.#signer = state.signer;
    this.#log = state.log;
    this.#allowed = [...(opts.allowedNames ?? ["*.stoq.local"])];
    this.#domain = opts.domain ?? "stoq.local";
    this.#defaultLifetime = opts.defaultLifetimeMs ?? DAY;
    this.#maxLifetime = opts.maxLifetimeMs ?? 7 * DAY;
    this.#falconCerts = opts.falconCertificates ?? true;
    this.#limits = {
      maxCsrBytes: opts.maxCsrBytes ?? DEFAULT_CSR_LIMITS.maxCsrBytes,
      maxSans: opts.maxSans ?? DEFAULT_CSR_LIMITS.maxSans,
    };
    this.#now = opts.now ?? (() => new Date());
    this.#random = opts.random ?? SYSTEM_RANDOM;
  }

  /**
   * Opens the CA in `store`, creating its root, log and Falcon keys when the store is new (another
   * process creating it at the same moment is fine: one identity wins). What is verified depends
   * on `opts.verify`; by default the open reads O(log n) rows whatever the log's size: the
   * identity record's seal and key pairs, the revocation chain and its seal, the committed tree
   * state and the latest tree head. Entries sequenced but not integrated (a process stopped
   * between the two) are integrated, and a committed state without a tree head gets one.
   *
   * @param opts The CA options.
   * @returns The CA.
   * @throws {StoqError} `CA_TAMPERED` naming the identity component, revocation or record that
   * changed; `LOG_TAMPERED` when the log fails verification; `CA_LOCKED` when the keys are wrapped
   * and the passphrase or key file is missing or wrong; `STORE_ERROR` when the store belongs to a
   * CA of another name or format or fails; `LIBRARY_NOT_FOUND` when the Falcon signer is not
   * built (`make native`).
   * @throws {TypeError} When an option is malformed.
   */
  static async open(
    opts: CertificateAuthorityOptions,
  ): Promise<CertificateAuthority> {
    if (
      typeof opts?.name !== "string" ||
      !/^[A-Za-z0-9._-]{1,64}$/.test(opts.name)
    ) {
      throw new TypeError(
        `Cannot open CA as 'name' must match [A-Za-z0-9._-]{1,64}: current value is ${opts?.name}`,
      );
    }
    if (!opts.store) {
      throw new TypeError(
        "Cannot open CA as 'store' is missing: pass a CaStore",
      );
    }
    if (opts.verify !== undefined && !["state", "full"].includes(opts.verify)) {
      throw new TypeError(
        `Cannot open CA as 'verify' must be "state" or "full": current value is ${opts.verify}`,
      );
    }
    checkLifetime("defaultLifetimeMs", opts.defaultLifetimeMs ?? DAY);
    checkLifetime("maxLifetimeMs", opts.maxLifetimeMs ?? 7 * DAY);
    checkLifetime("rootLifetimeMs", opts.rootLifetimeMs ?? 3650 * DAY);
    _positiveInt("maxCsrBytes", opts.maxCsrBytes ?? 1);
    _positiveInt("maxSans", opts.maxSans ?? 1);
    const secret = await _keySecret(opts);
    const now = opts.now ?? (() => new Date());
    const random = opts.random ?? SYSTEM_RANDOM;
    let text = await opts.store.loadIdentity();
    const legacy = text === undefined ? undefined : decodeLegacyIdentity(text);
    if (legacy) {
      // Written by the previous TrustChain: verified, then upgraded in place (same keys).
      if (legacy.name !== opts.name) {
        throw new StoqError(
          "STORE_ERROR",
          `This store holds CA ${legacy.name}, not ${opts.name}`,
        );
      }
      text = await migrateLegacyStore(opts.store, legacy, random, secret);
    }
    if (text === undefined) {
      const created = await createIdentityRecord(
        opts.name,
        `stoq.trustchain/${opts.name}`,
        now(),
        opts.rootLifetimeMs ?? 3650 * DAY,
        random,
        secret,
      );
      text = await opts.store.saveIdentity(encodeIdentityRecord(created));
    }
    const record = decodeIdentityRecord(text);
    if (record.name !== opts.name) {
      throw new StoqError(
        "STORE_ERROR",
        `This store holds CA ${record.name}, not ${opts.name}`,
      );
    }
    const id = await loadIdentity(record, random, secret);
    let falcon: FalconSigner;
    try {
      falcon = FalconSigner.open(id.logKeys.falcon.secretKey);
    } catch (cause) {
      if (cause instanceof StoqError) throw cause;
      throw caTampered("the Falcon secret key is malformed", cause);
    }
    let signer: LogSigner | undefined;
    try {
      checkFalconPair(falcon, id.logKeys.falcon.publicKey, random);
      signer = new LogSigner(record.origin, id.logKeys, {
        now,
        random,
        falconSigner: falcon,
      });
      const log = await StoredLog.open(
        opts.store,
        signer,
        id.macKey,
        opts.trustedCheckpoint,
      );
      const ca = new CertificateAuthority(opts, { id, falcon, signer, log });
      await ca.#loadRevocations();
      if (opts.verify === "full") await ca.audit();
      return ca;
    } catch (err) {
      signer?.close();
      falcon.close();
      throw err;
    }
  }

  /** The domain {@linkcode CertificateAuthority.provision} appends to bare app names. */
  get domain(): string {
    return this.#domain;
  }

  /** The root certificate DER. */
  get rootDer(): Uint8Array {
    return this.#id.rootDer.slice();
  }

  /** The root certificate PEM. */
  get rootPem(): string {
    return this.#id.root.toString("pem");
  }

  /** SHA-256 of the root certificate (DER), hex: what clients pin to fetch the root. */
  get rootFingerprint(): string {
    return bytesToHex(this.#id.issuerFingerprint);
  }

  /** When the root certificate expires. */
  get rootNotAfter(): Date {
    return this.#id.root.notAfter;
  }

  /** The Falcon-512 public key that co-signs certificates and checkpoints. */
  get falconPublicKey(): Uint8Array {
    return this.#id.logKeys.falcon.publicKey.slice();
  }

  /**
   * The transparency log as the store holds it (proofs, roots, tiles, vkeys; read-only use). Its
   * proofs and roots are asynchronous: they read stored node hashes.
   */
  get log(): StoredLog {
    return this.#log;
  }

  /**
   * The latest signed tree head this process knows (checkpoint note, RFC 6962 signature only), if
   * anything was issued. Other processes on a shared store may have grown the log since:
   * {@linkcode CertificateAuthority.checkpoint} catches up first.
   */
  get treeHead(): string | undefined {
    return this.#log.treeHead;
  }

  /** The size of the latest committed tree head this process knows (entries that may be served). */
  get treeSize(): number {
    return this.#log.size;
  }

  /** The CSR limits {@linkcode CertificateAuthority.issue} applies. */
  get limits(): Readonly<CsrLimits> {
    return { ...this.#limits };
  }

  /** This CA as a federation member: root certificate and log keys. */
  get member(): FederationMember {
    return {
      name: this.name,
      root: toBase64(this.#id.rootDer),
      origin: this.#log.origin,
      logKey: this.#log.vkeys.log,
      falconKey: this.#log.vkeys.falcon,
    };
  }

  #check(): void {
    if (this.#closing) {
      throw new StoqError("CLOSED", `CA ${this.name} is closed: open it again`);
    }
  }

  /**
   * Issues a leaf certificate from a CSR, logs it and returns it with its transparency proof.
   *
   * A refusal throws before anything is written, so the CA's state is unchanged. Issuances may run
   * concurrently (in this process and in others on a shared store): the store sequences them.
   *
   * @param csr A PKCS#10 request, PEM or DER, at most {@linkcode CertificateAuthorityOptions.maxCsrBytes}.
   * @param opts Issuance options.
   * @returns The certificate and proof.
   * @throws {StoqError} `CSR_TOO_LARGE`, `CSR_MALFORMED`, `TOO_MANY_SANS`, `CSR_BAD_SIGNATURE`,
   * `KEY_UNSUPPORTED`, `SAN_IPV4`, `NAME_NOT_ALLOWED`, `LIFETIME_TOO_LONG`, `UNAUTHORIZED`
   * (refused by `opts.authorize`), or `STORE_ERROR`.
   *
   * @example Refusing a malformed request
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * await ca.issue("not a csr").catch((e) => console.log(e.code)); // "CSR_MALFORMED"
   * ```
   */
  async issue(
    csr: string | Uint8Array,
    opts: IssueOptions = {},
  ): Promise<IssuedCertificate> {
    this.#check();
    if (typeof csr !== "string" && !(csr instanceof Uint8Array)) {
      throw new TypeError(
        "Cannot issue as 'csr' must be a PEM string or DER bytes",
      );
    }
    const lifetime = opts.lifetimeMs ?? this.#defaultLifetime;
    checkLifetime("lifetimeMs", lifetime);
    const checked = await checkCsr(csr, this.#allowed, this.#limits);
    return await this.#issueChecked(checked, lifetime, opts);
  }

  /** Signs, logs and commits a certificate for a key and names that passed the policy. */
  async #issueChecked(
    { spki, names }: CheckedRequest,
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
    this.#check();
    // X.509 times have one-second precision; truncate so the Falcon message matches the cert.
    const notBefore = new Date(Math.floor(this.#now().getTime() / 1000) * 1000);
    const t: LeafTemplate = {
      // 128 random bits: a collision is refused by the store's key and changes nothing.
      serial: newSerial(this.#random),
      notBefore,
      notAfter: new Date(notBefore.getTime() + lifetime),
      names,
      spki,
      issuer: this.#id.issuerName,
      authorityKeyId: this.#id.rootKeyId,
    };
    const parts = leafParts(t);
    const falcon = this.#falconCerts
      ? this.#falcon.sign(
        falconCertificateMessage(falconFields(t, parts)),
        this.#random,
      )
      : undefined;
    const extensions = leafExtensions(t, parts, falcon);
    return await this.#logAndIssue(t, parts.subject, extensions);
  }

  /**
   * The RFC 6962 precertificate flow: sign the precertificate (poison last); in the store's
   * sequencing transaction, take the next leaf index, sign the SCT for the entry at it and store
   * entry and certificate record; then integrate and sign a tree head over the committed tree,
   * sign the final certificate (SCT list last) and read the inclusion proof.
   */
  async #logAndIssue(
    t: LeafTemplate,
    subject: Uint8Array,
    extensions: Uint8Array[],
  ): Promise<IssuedCertificate> {
    const id = this.#id;
    const tbs = leafTbs(t, subject, extensions);
    const precertTbs = leafTbs(t, subject, [...extensions, POISON_EXTENSION]);
    const precert = signedCertificate(precertTbs, this.#signRoot(precertTbs));
    const timestamp = this.#now().getTime();
    let sct!: CertificateRecord["sct"];
    const index = await this.#store.sequence(1, (leafIndex) => {
      const entry: PrecertEntry = {
        timestamp,
        issuerKeyHash: id.issuerKeyHash,
        tbs,
        leafIndex,
      };
      sct = this.#signer.sct(entry);
      const logEntry = tileLeaf(timestampedEntry(entry), precert, [
        id.issuerFingerprint,
      ]);
      const fields = {
        serial: t.serial,
        leafIndex,
        notAfter: t.notAfter.getTime(),
        sct,
      };
      return [{
        entry: {
          entry: logEntry,
          mac: entryMac(id.macKey, leafIndex, logEntry),
        },
        certificate: { ...fields, mac: certificateMac(id.macKey, fields) },
      }];
    });
    const finalTbs = leafTbs(t, subject, [
      ...extensions,
      sctListExtension([sct]),
    ]);
    const cert = signedCertificate(finalTbs, this.#signRoot(finalTbs));
    const head = await this.#log.headCovering(index);
    return {
      serial: t.serial,
      der: cert,
      pem: pem(cert, "CERTIFICATE"),
      notBefore: t.notBefore,
      notAfter: t.notAfter,
      names: [...t.names],
      proof: await this.#log.proof(index, head, sct),
    };
  }

  #signRoot(tbs: Uint8Array): Uint8Array {
    return this.#id.rootSigner.sign(tbs);
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
    checkLifetime("lifetimeMs", lifetime);
    checkNames([name], this.#allowed);
    const { spki, key } = newP256Key(this.#random);
    const issued = await this.#issueChecked(
      { spki, names: [name] },
      lifetime,
      opts,
    );
    return {
      ...issued,
      cert: `${issued.pem}\n${this.rootPem}\n`,
      key,
      chainDer: [issued.der, this.rootDer],
    };
  }

  /** A certificate record, after its MAC check (`CA_TAMPERED` when it changed). */
  async #certificate(serial: string): Promise<CertificateRecord | undefined> {
    const rec = await this.#store.certificate(serial);
    if (rec) checkCertificateMac(this.#id.macKey, rec);
    return rec;
  }

  /**
   * A fresh transparency proof for an issued certificate, against the latest tree head, after
   * checking the certificate record (SCT included), its log entry and the stored tree.
   *
   * @param serial The serial number (hex).
   * @returns The proof, or `undefined` when this CA never issued the serial.
   * @throws {StoqError} `CA_TAMPERED` when the certificate record changed; `LOG_TAMPERED` when
   * its entry or the tree did.
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
    const rec = await this.#certificate(canonicalSerial(serial));
    if (!rec) return undefined;
    const head = await this.#log.headCovering(rec.leafIndex);
    return await this.#log.proof(rec.leafIndex, head, rec.sct);
  }

  /**
   * Log entries (static-ct-api `TileLeaf`s) of the committed tree, for data tiles; each is checked
   * against its MAC.
   *
   * @param start The first index.
   * @param end One past the last index (at most {@linkcode CertificateAuthority.treeSize}).
   * @returns The entries.
   * @throws {RangeError} When the range is outside the committed tree.
   * @throws {StoqError} `LOG_TAMPERED` when an entry changed or is missing.
   *
   * @example Reading the first entry
   * ```ts
   * import { CertificateAuthority, MemoryCaStore, parseTileLeaf } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * await ca.provision("app");
   * const [entry] = await ca.logEntries(0, 1);
   * console.log(parseTileLeaf(entry).entryType); // "precert"
   * ```
   */
  logEntries(start: number, end: number): Promise<Uint8Array[]> {
    try {
      this.#check();
      if (
        !Number.isSafeInteger(start) || !Number.isSafeInteger(end) ||
        start < 0 || start > end || end > this.treeSize
      ) {
        throw new RangeError(
          `Cannot read log entries as [${start}, ${end}) must lie within the tree of ${this.treeSize}`,
        );
      }
      return this.#log.entries(start, end);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Reads and verifies every revocation against the root-signed chain seal. */
  async #loadRevocations(): Promise<void> {
    const seal = await this.#store.revocationSeal();
    const rows = await this.#store.revocations();
    let chain = EMPTY_CHAIN;
    const revoked = new Map<string, RevocationRecord>();
    for (const r of rows) {
      chain = chainRevocation(chain, r);
      revoked.set(r.serial, r);
    }
    const count = seal?.count ?? 0;
    if (rows.length !== count || revoked.size !== rows.length) {
      throw caTampered(
        `${rows.length} revocations are stored but the revocation seal covers ${count}: a revocation was deleted or added`,
      );
    }
    if (
      seal &&
      (toBase64(chain) !== seal.chain ||
        !sealVerifies(
          this.#id.rootSpki,
          revocationSealMessage(this.name, count, chain),
          fromBase64(seal.signature),
        ))
    ) {
      throw caTampered(
        "the revocations do not match the root-signed revocation seal: one was changed",
      );
    }
    this.#revoked = revoked;
    this.#seal = seal;
  }

  /** Re-reads the revocations when another process (or an attacker) changed the seal. */
  async #syncRevocations(): Promise<void> {
    const seal = await this.#store.revocationSeal();
    if (
      seal?.signature !== this.#seal?.signature ||
      seal?.count !== this.#seal?.count
    ) {
      await this.#loadRevocations();
    }
  }

  /**
   * Revokes a certificate this CA issued. Idempotent: the first revocation stays. The revocation
   * extends the revocation chain, whose new seal the root key signs.
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
    if (!isRevocationReason(reason)) {
      throw new RangeError(
        `Cannot revoke as 'reason' must be an RFC 5280 reason name: current value is ${reason}`,
      );
    }
    const s = canonicalSerial(serial);
    if (!(await this.#certificate(s))) {
      throw new RangeError(
        `Cannot revoke serial ${serial}: this CA never issued it`,
      );
    }
    const revocation = { serial: s, reason, revokedAt: this.#now().getTime() };
    for (let attempt = 0; attempt < REVOKE_ATTEMPTS; attempt++) {
      await this.#syncRevocations();
      if (this.#revoked.has(s)) return;
      const expected = this.#seal;
      const count = (expected?.count ?? 0) + 1;
      const chain = chainRevocation(
        expected ? fromBase64(expected.chain) : EMPTY_CHAIN,
        revocation,
      );
      const next: RevocationSeal = {
        count,
        chain: toBase64(chain),
        signature: toBase64(
          this.#signRoot(revocationSealMessage(this.name, count, chain)),
        ),
      };
      const outcome = await this.#store.revoke(revocation, expected, next);
      if (outcome === "revoked") {
        this.#revoked.set(s, revocation);
        this.#seal = next;
        return;
      }
      // "exists" or "conflict": another process revoked meanwhile; re-read and go again.
      await this.#loadRevocations();
    }
    throw new StoqError(
      "STORE_ERROR",
      `Cannot revoke ${s}: other processes kept revoking at the same moment`,
    );
  }

  /**
   * A signed status answer for a serial, for peers to check revocation.
   *
   * @param serial The serial number (hex).
   * @returns The status signed by the root key (see `verifyStatus`).
   * @throws {StoqError} `CA_TAMPERED` when the revocations or the certificate record changed.
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
    const s = canonicalSerial(serial);
    await this.#syncRevocations();
    const rev = this.#revoked.get(s);
    const known = rev !== undefined ||
      (await this.#certificate(s)) !== undefined;
    return await signStatus({
      issuer: this.name,
      serial: s,
      status: rev ? "revoked" : known ? "good" : "unknown",
      producedAt: this.#now().getTime(),
      ...(rev
        ? { reason: rev.reason as RevocationReason, revokedAt: rev.revokedAt }
        : {}),
    }, this.#id.rootKey);
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
    await this.#syncRevocations();
    return await buildRevocationList(
      this.#id.root,
      this.#id.rootKey,
      this.#now(),
      [...this.#revoked.values()],
    );
  }

  /**
   * Publishes the latest committed tree head as a C2SP checkpoint: the RFC 6962 tree head
   * signature (static-ct-api) and a Falcon-512 co-signature. On a shared store it first
   * integrates what other processes sequenced.
   *
   * @returns The signed note (an RFC 6962 line, then a Falcon line).
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
    try {
      this.#check();
      return this.#log.checkpoint();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Verifies everything the store holds, O(n): every log entry (MAC, place, Merkle leaf), every
   * stored tree node and tree head against the recomputed tree, every certificate record (MAC,
   * SCT signature, and its entry being the precertificate of its serial), and the revocations.
   * `verify: "full"` runs it at open.
   *
   * @returns What was checked.
   * @throws {StoqError} `LOG_TAMPERED` or `CA_TAMPERED` naming the first thing that fails.
   *
   * @example Auditing a CA
   * ```ts
   * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * await ca.provision("app");
   * console.log((await ca.audit()).certificates); // 1
   * ```
   */
  async audit(): Promise<CaAudit> {
    this.#check();
    const id = this.#id;
    const logKey = await importLogKey(id.logKeys.spki);
    let certificates = 0;
    const log = await this.#log.audit(async (start, entries) => {
      const records = await this.#store.certificates(
        start,
        start + entries.length,
      );
      if (records.length !== entries.length) {
        throw caTampered(
          `${records.length} certificate records for the ${entries.length} log entries from ${start}: one was deleted`,
        );
      }
      for (const [i, rec] of records.entries()) {
        checkCertificateMac(id.macKey, rec);
        const entry = entries[i];
        if (
          rec.leafIndex !== start + i ||
          !entryIsCertificate(
            entry,
            rec.serial,
            id.issuerKeyHash,
            id.issuerFingerprint,
          )
        ) {
          throw caTampered(
            `log entry ${
              start + i
            } is not the precertificate of certificate ${rec.serial}`,
          );
        }
        const leaf = parseTileLeaf(entry);
        const sctOk = rec.sct.logId === this.#log.logId &&
          rec.sct.leafIndex === rec.leafIndex &&
          rec.sct.timestamp === leaf.timestamp &&
          await verifySctSignature(rec.sct, {
            issuerKeyHash: leaf.issuerKeyHash!,
            tbs: leaf.signed,
          }, logKey);
        if (!sctOk) {
          throw caTampered(
            `the SCT of certificate ${rec.serial} does not verify`,
          );
        }
        certificates++;
      }
    });
    await this.#loadRevocations();
    return { ...log, certificates, revocations: this.#revoked.size };
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
  endorse(bundle: TrustBundle): Promise<BundleSignature> {
    this.#check();
    return endorseBundle(this.name, this.#id.rootKey, bundle);
  }

  /**
   * Closes the CA: wipes its expanded Falcon key and closes its store (a PostgreSQL pool drains
   * first). Idempotent; resolves when the store is closed.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#signer.close();
      this.#falcon.close();
      await this.#store.close();
    })();
    return this.#closing;
  }

  /** Same as {@linkcode CertificateAuthority.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
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
