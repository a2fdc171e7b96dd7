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
import { auditLog, checkTrustedCheckpoint } from "./core/audit.ts";
import { TransparencyLog, type TransparencyProof } from "./core/ct_log.ts";
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
  createIdentityRecord,
  loadIdentity,
} from "./core/identity.ts";
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
} from "./core/policy.ts";
import { type RandomSource, SYSTEM_RANDOM } from "./core/random.ts";
import {
  POISON_EXTENSION,
  type PrecertEntry,
  sctListExtension,
  tileLeaf,
  timestampedEntry,
} from "./core/rfc6962.ts";
import {
  buildRevocationList,
  canonicalSerial,
  isRevocationReason,
  type RevocationReason,
  type SignedStatus,
  signStatus,
} from "./core/status.ts";
import type { CaStore } from "./store/store.ts";
import { toBase64 } from "./core/_bytes.ts";

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
   * `LOG_TAMPERED` unless the stored log still contains that tree. Without it, deleting the newest
   * entries, certificates and tree heads together cannot be told apart from a shorter log.
   */
  trustedCheckpoint?: string;
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
  readonly #id: CaIdentity;
  readonly #store: CaStore;
  readonly #falcon: FalconSigner;
  #log: TransparencyLog;
  #lastHead: string | undefined;
  #treeSize: number;
  readonly #allowed: readonly string[];
  readonly #domain: string;
  readonly #defaultLifetime: number;
  readonly #maxLifetime: number;
  readonly #falconCerts: boolean;
  readonly #now: () => Date;
  readonly #random: RandomSource;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(
    opts: CertificateAuthorityOptions,
    state: {
      id: CaIdentity;
      falcon: FalconSigner;
      log: TransparencyLog;
      lastHead?: string;
    },
  ) {
    this.name = opts.name;
    this.#store = opts.store;
    this.#id = state.id;
    this.#falcon = state.falcon;
    this.#log = state.log;
    this.#lastHead = state.lastHead;
    this.#treeSize = state.log.size;
    this.#allowed = [...(opts.allowedNames ?? ["*.stoq.local"])];
    this.#domain = opts.domain ?? "stoq.local";
    this.#defaultLifetime = opts.defaultLifetimeMs ?? DAY;
    this.#maxLifetime = opts.maxLifetimeMs ?? 7 * DAY;
    this.#falconCerts = opts.falconCertificates ?? true;
    this.#now = opts.now ?? (() => new Date());
    this.#random = opts.random ?? SYSTEM_RANDOM;
  }

  /**
   * Opens the CA in `store`, creating its root, log and Falcon keys when the store is new. An
   * existing log is audited: every stored tree head must verify and match the entries, and every
   * entry must be the precertificate of the certificate stored at its index.
   *
   * @param opts The CA options.
   * @returns The CA.
   * @throws {StoqError} `LOG_TAMPERED` when the stored log fails verification; `STORE_ERROR` when
   * the store belongs to a CA of another name or format; `LIBRARY_NOT_FOUND` when the Falcon
   * signer is not built (`make native`).
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
    checkLifetime("defaultLifetimeMs", opts.defaultLifetimeMs ?? DAY);
    checkLifetime("maxLifetimeMs", opts.maxLifetimeMs ?? 7 * DAY);
    checkLifetime("rootLifetimeMs", opts.rootLifetimeMs ?? 3650 * DAY);
    const now = opts.now ?? (() => new Date());
    const random = opts.random ?? SYSTEM_RANDOM;
    let record = await opts.store.loadIdentity();
    if (!record) {
      record = await createIdentityRecord(
        opts.name,
        `stoq.trustchain/${opts.name}`,
        now(),
        opts.rootLifetimeMs ?? 3650 * DAY,
        random,
      );
      await opts.store.saveIdentity(record);
    }
    if (record.name !== opts.name) {
      throw new StoqError(
        "STORE_ERROR",
        `This store holds CA ${record.name}, not ${opts.name}`,
      );
    }
    const id = await loadIdentity(record, random);
    const falcon = FalconSigner.open(id.logKeys.falcon.secretKey);
    try {
      const entries = await opts.store.entries();
      let log: TransparencyLog;
      try {
        log = new TransparencyLog(record.origin, id.logKeys, entries, {
          now,
          random,
          falconSigner: falcon,
        });
      } catch (cause) {
        throw new StoqError(
          "LOG_TAMPERED",
          "The CA's log holds a malformed or misplaced entry: restore it from a backup",
          { cause },
        );
      }
      const lastHead = await auditLog({
        log,
        heads: await opts.store.treeHeads(),
        certificates: await opts.store.certificates(),
        entries,
        issuerKeyHash: id.issuerKeyHash,
        issuerFingerprint: id.issuerFingerprint,
      });
      if (opts.trustedCheckpoint !== undefined) {
        await checkTrustedCheckpoint(log, opts.trustedCheckpoint);
      }
      return new CertificateAuthority(opts, { id, falcon, log, lastHead });
    } catch (err) {
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

  /** The Falcon-512 public key that co-signs certificates and checkpoints. */
  get falconPublicKey(): Uint8Array {
    return this.#id.logKeys.falcon.publicKey.slice();
  }

  /** The transparency log (read-only use: proofs, roots, tiles, vkeys). */
  get log(): TransparencyLog {
    return this.#log;
  }

  /** The latest signed tree head (checkpoint note, RFC 6962 signature only), if anything was issued. */
  get treeHead(): string | undefined {
    return this.#lastHead;
  }

  /** The size of the latest committed tree head (entries that may be served and proven). */
  get treeSize(): number {
    return this.#treeSize;
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
    if (this.#closed) {
      throw new StoqError("CLOSED", `CA ${this.name} is closed: open it again`);
    }
  }

  // Issuances (and checkpoints) run one at a time so log order matches store order.
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
   * @example Refusing a malformed request
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
    return this.#serialize(async () => {
      const lifetime = opts.lifetimeMs ?? this.#defaultLifetime;
      checkLifetime("lifetimeMs", lifetime);
      const checked = await checkCsr(csr, this.#allowed);
      return await this.#issueChecked(checked, lifetime, opts);
    });
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
    // X.509 times have one-second precision; truncate so the Falcon message matches the cert.
    const notBefore = new Date(Math.floor(this.#now().getTime() / 1000) * 1000);
    let serial: string;
    do {
      serial = newSerial(this.#random);
    } while (await this.#store.certificate(serial));
    const t: LeafTemplate = {
      serial,
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
   * The RFC 6962 precertificate flow: sign the precertificate (poison last), have the log sign
   * the SCT for its entry and append it, sign the new tree head and the final certificate (SCT
   * list last), and commit all of it in one store transaction.
   */
  async #logAndIssue(
    t: LeafTemplate,
    subject: Uint8Array,
    extensions: Uint8Array[],
  ): Promise<IssuedCertificate> {
    const id = this.#id;
    const entry: PrecertEntry = {
      timestamp: this.#now().getTime(),
      issuerKeyHash: id.issuerKeyHash,
      tbs: leafTbs(t, subject, extensions),
      leafIndex: this.#log.size,
    };
    const precertTbs = leafTbs(t, subject, [...extensions, POISON_EXTENSION]);
    const precert = signedCertificate(precertTbs, this.#signRoot(precertTbs));
    const sct = this.#log.sct(entry);
    const finalTbs = leafTbs(t, subject, [
      ...extensions,
      sctListExtension([sct]),
    ]);
    const logEntry = tileLeaf(timestampedEntry(entry), precert, [
      id.issuerFingerprint,
    ]);
    this.#log.append(logEntry);
    let head: string;
    let cert: Uint8Array;
    try {
      head = await this.#log.signTreeHead();
      cert = signedCertificate(finalTbs, this.#signRoot(finalTbs));
      await this.#store.commitIssuance(
        {
          serial: t.serial,
          leafIndex: entry.leafIndex,
          notAfter: t.notAfter.getTime(),
          sct,
        },
        logEntry,
        head,
      );
    } catch (err) {
      // Nothing was committed: rebuild the in-memory log from what the store holds.
      await this.#rebuildLog();
      throw err;
    }
    this.#lastHead = head;
    this.#treeSize = entry.leafIndex + 1;
    return {
      serial: t.serial,
      der: cert,
      pem: pem(cert, "CERTIFICATE"),
      notBefore: t.notBefore,
      notAfter: t.notAfter,
      names: [...t.names],
      proof: this.#log.proof(entry.leafIndex, head, sct),
    };
  }

  #signRoot(tbs: Uint8Array): Uint8Array {
    return this.#id.rootSigner.sign(tbs);
  }

  async #rebuildLog(): Promise<void> {
    const old = this.#log;
    this.#log = new TransparencyLog(
      old.origin,
      this.#id.logKeys,
      await this.#store.entries(),
      { now: this.#now, random: this.#random, falconSigner: this.#falcon },
    );
    old.close();
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
    const rec = await this.#store.certificate(canonicalSerial(serial));
    const head = this.#lastHead;
    if (!rec || !head) return undefined;
    return this.#log.proof(rec.leafIndex, head, rec.sct);
  }

  /**
   * Log entries (static-ct-api `TileLeaf`s) of the committed tree, for data tiles.
   *
   * @param start The first index.
   * @param end One past the last index (at most {@linkcode CertificateAuthority.treeSize}).
   * @returns The entries.
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
    this.#check();
    if (
      !Number.isSafeInteger(start) || !Number.isSafeInteger(end) ||
      start < 0 || start > end || end > this.#treeSize
    ) {
      return Promise.reject(
        new RangeError(
          `Cannot read log entries as [${start}, ${end}) must lie within the tree of ${this.#treeSize}`,
        ),
      );
    }
    return this.#store.entries(start, end);
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
    if (!isRevocationReason(reason)) {
      throw new RangeError(
        `Cannot revoke as 'reason' must be an RFC 5280 reason name: current value is ${reason}`,
      );
    }
    const s = canonicalSerial(serial);
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
    const s = canonicalSerial(serial);
    const rev = await this.#store.revocation(s);
    const known = rev !== undefined ||
      (await this.#store.certificate(s)) !== undefined;
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
    return await buildRevocationList(
      this.#id.root,
      this.#id.rootKey,
      this.#now(),
      await this.#store.revocations(),
    );
  }

  /**
   * Publishes the current tree head as a C2SP checkpoint: the RFC 6962 tree head signature
   * (static-ct-api) and a Falcon-512 co-signature.
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
    this.#check();
    return this.#serialize(() => this.#log.checkpoint());
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

  /** Closes the CA and its store and wipes its expanded Falcon key; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#log.close();
    this.#falcon.close();
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
