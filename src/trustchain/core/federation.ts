/**
 * Federation: CAs that trust each other through a signed trust bundle, and the peer validator the
 * transport calls.
 *
 * Trust rules (simple on purpose):
 * - The genesis bundle must be signed by every member it lists; it is the one thing exchanged out
 *   of band.
 * - An update must carry `version = current + 1` and valid signatures from a strict majority of the
 *   *current* members (by their root keys). A bad signature anywhere refuses the update.
 * - A peer certificate is accepted when a current member's root signed it, it is within its
 *   validity, its Falcon co-signature (when present) verifies, it embeds an SCT from that
 *   member's log that verifies offline (RFC 6962: the log's ECDSA signature over the
 *   precertificate entry rebuilt from the certificate), and an inclusion proof of that entry
 *   verifies against a tree head signed by the member's log. A removed member's certificates
 *   therefore stop validating.
 *
 * How the proof travels: the SCT is inside the certificate, but the inclusion proof comes into
 * being after the certificate is signed. {@linkcode Federation.verifyPeer} takes it alongside the
 * chain (`proof`, e.g. sent by the peer on a stream as JSON) or looks it up by member and serial
 * through a {@linkcode PeerEvidenceSource} (e.g. the member's CA or a log mirror). The same source
 * may also supply a signed status answer for revocation.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { StoqError } from "../../errors.ts";
import { type TransparencyProof, verifyTransparencyProof } from "./ct_log.ts";
import { _vkeyParts, type NoteVerifier, parseVkey } from "./checkpoint.ts";
import { _verifyParsedFalcon } from "./falcon.ts";
import {
  embeddedScts,
  importLogKey,
  logIdOf,
  merkleTreeLeaf,
  precertEntryOf,
  type Sct,
  timestampedEntry,
  verifySctSignature,
} from "./rfc6962.ts";
import { canonicalSerial, type SignedStatus, verifyStatus } from "./status.ts";
import {
  buf,
  equalBytes,
  fromBase64,
  toBase64,
  utf8ToBytes,
} from "./_bytes.ts";

/** One CA in a federation. */
export interface FederationMember {
  /** The CA name; unique in the bundle. */
  name: string;
  /** Base64 DER of the member's root certificate. */
  root: string;
  /** The member's log origin. */
  origin: string;
  /** C2SP vkey of the log's RFC 6962 key (type 0x05: ECDSA P-256 SubjectPublicKeyInfo). */
  logKey: string;
  /** C2SP vkey of the member's Falcon-512 key (type 0xff with its identifier), when it co-signs. */
  falconKey?: string;
}

/** The set of federation members at one version. */
export interface TrustBundle {
  /** Starts at 1; each update adds one. */
  version: number;
  /** The members. */
  members: FederationMember[];
}

/** One member's endorsement of a bundle. */
export interface BundleSignature {
  /** The signing member's name. */
  member: string;
  /** Base64 ECDSA P-256 (P1363) signature by the member's root key over {@linkcode trustBundleMessage}. */
  signature: string;
}

/** A bundle with its endorsements. */
export interface SignedTrustBundle {
  /** The bundle. */
  bundle: TrustBundle;
  /** Endorsements. */
  signatures: BundleSignature[];
}

/** Looks up evidence about a member's certificate. */
export interface PeerEvidenceSource {
  /** The transparency proof of `serial` issued by member `member`. */
  proof(member: string, serial: string): Promise<TransparencyProof | undefined>;
  /** A signed status answer for `serial`, if the source has one. */
  status?(member: string, serial: string): Promise<SignedStatus | undefined>;
}

/** Options for {@linkcode Federation.verifyPeer}. */
export interface VerifyPeerOptions {
  /** The peer's certificate chain, leaf first, DER. */
  chain: Uint8Array[];
  /** The leaf's transparency proof, when sent with the chain. */
  proof?: TransparencyProof;
  /** A signed status answer, when sent with the chain. */
  status?: SignedStatus;
  /**
   * The time to validate at.
   * @default {the federation's clock}
   */
  now?: Date;
}

/** A peer that passed validation. */
export interface VerifiedPeer {
  /** The member that issued the peer's certificate. */
  member: string;
  /** The leaf's serial (canonical hex). */
  serial: string;
  /** The leaf's DNS names. */
  names: string[];
  /** The leaf's expiry. */
  notAfter: Date;
}

/** Options for {@linkcode Federation.create}. */
export interface FederationOptions {
  /** Where to look up proofs and statuses that do not come with the chain. */
  source?: PeerEvidenceSource;
  /**
   * Oldest status answer accepted.
   * @default {3_600_000} (1 h)
   */
  maxStatusAgeMs?: number;
  /**
   * The clock.
   * @default {() => new Date()}
   */
  now?: () => Date;
}

/**
 * The bytes members sign: a versioned, canonical JSON encoding of the bundle with members sorted by
 * name.
 *
 * @param bundle The bundle.
 * @returns The message.
 *
 * @example Member order does not matter
 * ```ts
 * import { trustBundleMessage } from "./federation.ts";
 * const a = { name: "a", root: "", origin: "o", logKey: "k" };
 * const b = { name: "b", root: "", origin: "o", logKey: "k" };
 * const m1 = trustBundleMessage({ version: 1, members: [a, b] });
 * const m2 = trustBundleMessage({ version: 1, members: [b, a] });
 * console.log(m1.join() === m2.join()); // true
 * ```
 */
export function trustBundleMessage(bundle: TrustBundle): Uint8Array {
  const members = [...bundle.members]
    .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
    .map((m) => [m.name, m.root, m.origin, m.logKey, m.falconKey ?? ""]);
  return utf8ToBytes(
    `stoq-trust-bundle-v1\n${JSON.stringify([bundle.version, members])}`,
  );
}

interface _Member {
  info: FederationMember;
  root: x509.X509Certificate;
  rootKey: CryptoKey;
  /** The root's SubjectPublicKeyInfo DER (its hash is the issuer key hash of log entries). */
  rootSpki: Uint8Array;
  log: NoteVerifier;
  logId: string;
  logKey: CryptoKey;
  falcon?: Uint8Array;
}

function _invalid(message: string, cause?: unknown): StoqError {
  return new StoqError(
    "BUNDLE_INVALID",
    message,
    cause === undefined ? {} : { cause },
  );
}

async function _parseMembers(
  bundle: TrustBundle,
): Promise<Map<string, _Member>> {
  if (
    typeof bundle !== "object" || bundle === null ||
    !Number.isSafeInteger(bundle.version) ||
    bundle.version < 1 || !Array.isArray(bundle.members) ||
    bundle.members.length === 0
  ) {
    throw _invalid(
      "Trust bundle is malformed: expected { version >= 1, members: [...] }",
    );
  }
  const out = new Map<string, _Member>();
  for (const info of bundle.members) {
    if (out.has(info?.name)) {
      throw _invalid(`Trust bundle lists member ${info.name} twice`);
    }
    try {
      const root = new x509.X509Certificate(buf(fromBase64(info.root)));
      const rootKey = await root.publicKey.export(
        { name: "ECDSA", namedCurve: "P-256" },
        ["verify"],
      );
      const log = parseVkey(info.logKey);
      const logParts = _vkeyParts(info.logKey);
      if (log.name !== info.origin) {
        throw new Error("log key name differs from origin");
      }
      if (logParts.type !== 0x05) {
        throw new Error("log key is not an RFC 6962 (0x05) key");
      }
      const falcon = info.falconKey
        ? (parseVkey(info.falconKey), _vkeyParts(info.falconKey))
        : undefined;
      if (falcon && falcon.type !== 0xff) {
        throw new Error("Falcon key is not a 0xff key");
      }
      out.set(info.name, {
        info,
        root,
        rootKey,
        rootSpki: new Uint8Array(root.publicKey.rawData),
        log,
        logId: toBase64(logIdOf(logParts.publicKey)),
        logKey: await importLogKey(logParts.publicKey),
        falcon: falcon?.publicKey,
      });
    } catch (cause) {
      throw _invalid(
        `Trust bundle member ${info?.name} is malformed: check its root and keys`,
        cause,
      );
    }
  }
  return out;
}

async function _signers(
  signed: SignedTrustBundle,
  members: Map<string, _Member>,
): Promise<Set<string>> {
  const message = buf(trustBundleMessage(signed.bundle));
  const ok = new Set<string>();
  for (const s of signed.signatures ?? []) {
    const m = members.get(s?.member);
    if (!m) continue; // Signatures by non-members count for nothing.
    let valid = false;
    try {
      valid = await crypto.subtle.verify(
        { name: "ECDSA", hash: "SHA-256" },
        m.rootKey,
        buf(fromBase64(s.signature)),
        message,
      );
    } catch {
      valid = false;
    }
    if (!valid) {
      throw _invalid(`Trust bundle signature by ${s.member} does not verify`);
    }
    ok.add(s.member);
  }
  return ok;
}

/** The certificate's SCT from the member's log, verified offline; throws `PROOF_INVALID`. */
async function _verifyEmbeddedSct(
  leafDer: Uint8Array,
  member: _Member,
): Promise<Sct> {
  let scts: Sct[];
  try {
    scts = embeddedScts(leafDer);
  } catch (cause) {
    throw new StoqError(
      "PROOF_INVALID",
      "Peer certificate's SCT list is malformed",
      { cause },
    );
  }
  const sct = scts.find((s) => s.logId === member.logId);
  if (!sct) {
    throw new StoqError(
      "PROOF_INVALID",
      `Peer certificate embeds no SCT from ${member.info.name}'s log`,
    );
  }
  let valid = false;
  try {
    valid = await verifySctSignature(
      sct,
      precertEntryOf(leafDer, member.rootSpki, sct),
      member.logKey,
    );
  } catch {
    valid = false;
  }
  if (!valid) {
    throw new StoqError(
      "PROOF_INVALID",
      "Peer certificate's SCT does not verify",
    );
  }
  return sct;
}

/**
 * Endorses a trust bundle: the member's root key signs {@linkcode trustBundleMessage}.
 *
 * @param member The endorsing member's name.
 * @param rootKey Its root's ECDSA P-256 private key.
 * @param bundle The bundle.
 * @returns The endorsement.
 */
export async function endorseBundle(
  member: string,
  rootKey: CryptoKey,
  bundle: TrustBundle,
): Promise<BundleSignature> {
  const sig = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    rootKey,
    buf(trustBundleMessage(bundle)),
  );
  return { member, signature: toBase64(new Uint8Array(sig)) };
}

/**
 * A federation of CAs and the validator for peer certificates.
 *
 * @example Two CAs trusting each other
 * ```ts
 * import { CertificateAuthority, Federation, MemoryCaStore } from "../mod.ts";
 * const a = await CertificateAuthority.open({ name: "a", store: new MemoryCaStore() });
 * const b = await CertificateAuthority.open({ name: "b", store: new MemoryCaStore() });
 * const bundle = { version: 1, members: [a.member, b.member] };
 * const fed = await Federation.create({ bundle, signatures: [await a.endorse(bundle), await b.endorse(bundle)] });
 * const id = await a.provision("app");
 * console.log((await fed.verifyPeer({ chain: id.chainDer, proof: id.proof })).member); // "a"
 * ```
 */
export class Federation {
  #bundle: TrustBundle;
  #members: Map<string, _Member>;
  readonly #source?: PeerEvidenceSource;
  readonly #maxStatusAge: number;
  readonly #now: () => Date;

  private constructor(
    bundle: TrustBundle,
    members: Map<string, _Member>,
    opts: FederationOptions,
  ) {
    this.#bundle = bundle;
    this.#members = members;
    this.#source = opts.source;
    this.#maxStatusAge = opts.maxStatusAgeMs ?? 3_600_000;
    this.#now = opts.now ?? (() => new Date());
  }

  /**
   * Starts a federation from its genesis bundle, which every listed member must have signed.
   *
   * @param genesis The signed genesis bundle.
   * @param opts Evidence source and clock.
   * @returns The federation.
   * @throws {StoqError} `BUNDLE_INVALID` when the bundle is malformed or a member did not sign.
   */
  static async create(
    genesis: SignedTrustBundle,
    opts: FederationOptions = {},
  ): Promise<Federation> {
    try {
      return await Federation.#create(genesis, opts);
    } catch (cause) {
      if (cause instanceof StoqError) throw cause;
      throw _invalid("Trust bundle is malformed", cause);
    }
  }

  static async #create(
    genesis: SignedTrustBundle,
    opts: FederationOptions,
  ): Promise<Federation> {
    const members = await _parseMembers(genesis?.bundle);
    const signers = await _signers(genesis, members);
    for (const name of members.keys()) {
      if (!signers.has(name)) {
        throw _invalid(`Genesis bundle lacks the signature of member ${name}`);
      }
    }
    return new Federation(structuredClone(genesis.bundle), members, opts);
  }

  /** The current bundle (a copy). */
  get bundle(): TrustBundle {
    return structuredClone(this.#bundle);
  }

  /**
   * Applies a signed update: next version, endorsed by a strict majority of current members.
   *
   * @param next The signed new bundle.
   * @throws {StoqError} `BUNDLE_INVALID` when the version, a signature or the quorum is wrong; the
   * federation is then unchanged.
   *
   * @example Removing a member
   * ```ts
   * import { CertificateAuthority, Federation, MemoryCaStore } from "../mod.ts";
   * const cas = await Promise.all(["a", "b", "c"].map((name) => CertificateAuthority.open({ name, store: new MemoryCaStore() })));
   * const v1 = { version: 1, members: cas.map((c) => c.member) };
   * const fed = await Federation.create({ bundle: v1, signatures: await Promise.all(cas.map((c) => c.endorse(v1))) });
   * const v2 = { version: 2, members: [cas[0].member, cas[1].member] };
   * await fed.update({ bundle: v2, signatures: [await cas[0].endorse(v2), await cas[1].endorse(v2)] });
   * console.log(fed.bundle.members.length); // 2
   * ```
   */
  async update(next: SignedTrustBundle): Promise<void> {
    try {
      await this.#update(next);
    } catch (cause) {
      if (cause instanceof StoqError) throw cause;
      throw _invalid("Trust bundle update is malformed", cause);
    }
  }

  async #update(next: SignedTrustBundle): Promise<void> {
    if (next?.bundle?.version !== this.#bundle.version + 1) {
      throw _invalid(
        `Trust bundle update must have version ${
          this.#bundle.version + 1
        }: current value is ${next?.bundle?.version}`,
      );
    }
    const members = await _parseMembers(next.bundle);
    const signers = await _signers(next, this.#members);
    const needed = Math.floor(this.#members.size / 2) + 1;
    if (signers.size < needed) {
      throw _invalid(
        `Trust bundle update has ${signers.size} member signatures, needs ${needed} of ${this.#members.size}`,
      );
    }
    this.#bundle = structuredClone(next.bundle);
    this.#members = members;
  }

  /**
   * Validates a peer's certificate chain and transparency proof. Pure apart from the optional
   * evidence lookup; the transport calls it from deferred certificate validation.
   *
   * @param opts The chain, optional proof and status, and time.
   * @returns Who the peer is.
   * @throws {StoqError} `CERT_UNTRUSTED` (no current member issued it, expired, bad Falcon
   * co-signature, bad status), `PROOF_INVALID` (missing or failing transparency proof) or
   * `CERT_REVOKED`.
   */
  async verifyPeer(opts: VerifyPeerOptions): Promise<VerifiedPeer> {
    try {
      return await this.#verifyPeer(opts);
    } catch (cause) {
      if (cause instanceof StoqError) throw cause;
      // A certificate that parses can still fail in a lazily decoded field.
      throw new StoqError(
        "CERT_UNTRUSTED",
        "Peer certificate or its evidence is malformed",
        { cause },
      );
    }
  }

  async #verifyPeer(opts: VerifyPeerOptions): Promise<VerifiedPeer> {
    const now = opts?.now ?? this.#now();
    const chain = opts?.chain;
    if (
      !Array.isArray(chain) || chain.length === 0 ||
      !(chain[0] instanceof Uint8Array)
    ) {
      throw new StoqError(
        "CERT_UNTRUSTED",
        "Peer sent no certificate: expected a DER chain, leaf first",
      );
    }
    const leafDer = chain[0];
    let leaf: x509.X509Certificate;
    try {
      leaf = new x509.X509Certificate(buf(leafDer));
    } catch (cause) {
      throw new StoqError(
        "CERT_UNTRUSTED",
        "Peer certificate cannot be parsed",
        { cause },
      );
    }
    const issuerDer = new Uint8Array(leaf.issuerName.toArrayBuffer());
    let member: _Member | undefined;
    for (const m of this.#members.values()) {
      if (
        !equalBytes(
          new Uint8Array(m.root.subjectName.toArrayBuffer()),
          issuerDer,
        )
      ) continue;
      let ok = false;
      try {
        ok = await leaf.verify({
          publicKey: m.root.publicKey,
          signatureOnly: true,
        });
      } catch {
        ok = false;
      }
      if (ok) {
        member = m;
        break;
      }
    }
    if (!member) {
      throw new StoqError(
        "CERT_UNTRUSTED",
        "Peer certificate was not issued by a current federation member",
      );
    }
    if (now < leaf.notBefore || now > leaf.notAfter) {
      throw new StoqError(
        "CERT_UNTRUSTED",
        `Peer certificate is not valid at ${now.toISOString()}`,
      );
    }
    if (leaf.getExtension(x509.BasicConstraintsExtension)?.ca) {
      throw new StoqError(
        "CERT_UNTRUSTED",
        "Peer certificate is a CA certificate, not a leaf",
      );
    }
    if (
      member.falcon &&
      _verifyParsedFalcon(leaf, member.falcon) === "invalid"
    ) {
      throw new StoqError(
        "CERT_UNTRUSTED",
        "Peer certificate's Falcon co-signature does not verify",
      );
    }
    const serial = canonicalSerial(leaf.serialNumber);
    const sct = await _verifyEmbeddedSct(leafDer, member);
    const proof = opts.proof ??
      await this.#source?.proof(member.info.name, serial);
    if (!proof) {
      throw new StoqError(
        "PROOF_INVALID",
        "Peer certificate has no transparency proof: send one or configure a source",
      );
    }
    if (proof.leafIndex !== sct.leafIndex) {
      throw new StoqError(
        "PROOF_INVALID",
        `The inclusion proof is for entry ${proof.leafIndex}, the SCT for ${sct.leafIndex}`,
      );
    }
    await verifyTransparencyProof(
      merkleTreeLeaf(
        timestampedEntry(precertEntryOf(leafDer, member.rootSpki, sct)),
      ),
      proof,
      [member.log],
      member.info.origin,
    );
    const status = opts.status ??
      await this.#source?.status?.(member.info.name, serial);
    if (status) {
      if (
        status.issuer !== member.info.name ||
        canonicalSerial(status.serial) !== serial ||
        !(await verifyStatus(status, new Uint8Array(member.root.rawData)))
      ) {
        throw new StoqError(
          "CERT_UNTRUSTED",
          "Peer certificate's status answer is not signed by its issuer",
        );
      }
      if (status.status === "revoked") {
        throw new StoqError(
          "CERT_REVOKED",
          `Peer certificate ${serial} was revoked (${status.reason})`,
        );
      }
      if (now.getTime() - status.producedAt > this.#maxStatusAge) {
        throw new StoqError(
          "CERT_UNTRUSTED",
          "Peer certificate's status answer is too old: fetch a fresh one",
        );
      }
      if (status.status !== "good") {
        throw new StoqError(
          "CERT_UNTRUSTED",
          `Peer certificate ${serial} is unknown to its issuer`,
        );
      }
    }
    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
    return {
      member: member.info.name,
      serial,
      names: san?.names.items.filter((i) => i.type === "dns" || i.type === "ip")
        .map((i) => i.value) ?? [],
      notAfter: leaf.notAfter,
    };
  }
}
