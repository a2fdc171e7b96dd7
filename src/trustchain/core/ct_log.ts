/**
 * The certificate-transparency log: an RFC 6962 log of precertificate entries in an RFC 9162
 * Merkle tree, with signed tree heads published as C2SP checkpoints (an RFC 6962
 * `TreeHeadSignature` line that static-ct-api clients verify, plus a Falcon-512 co-signature
 * line), SCTs, and the proof bundle that travels with a certificate.
 *
 * Entries are stored as C2SP static-ct-api `TileLeaf`s (the `TimestampedEntry`, the precertificate
 * and the issuer fingerprints), so data tiles are their concatenation; the tree holds the hashes
 * of their `MerkleTreeLeaf`s.
 *
 * The log is pure: it holds hashes in memory and signs with the keys, clock and random source it
 * is given; persistence is the {@linkcode CaStore}'s job.
 *
 * @module
 */

import { StoqError } from "../../errors.ts";
import {
  type Checkpoint,
  FALCON_NOTE_TYPE,
  falconNoteSigner,
  formatCheckpoint,
  type NoteVerifier,
  noteVerifier,
  noteVkey,
  openNote,
  parseCheckpoint,
  RFC6962_NOTE_TYPE,
  rfc6962NoteSigner,
  signNote,
} from "./checkpoint.ts";
import { type EcdsaSigner, newP256Pkcs8, p256Signer } from "./ecdsa.ts";
import { type FalconKeyPair, FalconSigner } from "./falcon.ts";
import {
  appendLeaves,
  type CompactRange,
  leafHash,
  MerkleTree,
  type TreeNode,
  verifyInclusion,
} from "./merkle.ts";
import { type RandomSource, SYSTEM_RANDOM } from "./random.ts";
import {
  logIdOf,
  merkleTreeLeaf,
  parseTileLeaf,
  type PrecertEntry,
  type Sct,
  signSct,
} from "./rfc6962.ts";
import { equalBytes, fromBase64, toBase64 } from "./_bytes.ts";

/** The keys a log signs with. */
export interface LogKeys {
  /** The ECDSA P-256 private key for SCTs and tree heads (RFC 6962 §2.1.4), PKCS#8 DER. */
  privateKey: Uint8Array;
  /** The log key's DER SubjectPublicKeyInfo; its SHA-256 is the log ID. */
  spki: Uint8Array;
  /** Falcon-512 key pair for checkpoint co-signatures. */
  falcon: FalconKeyPair;
}

/**
 * The transparency proof that travels with a certificate: JSON-safe, so the transport can send it as
 * is on a stream.
 */
export interface TransparencyProof {
  /** The entry's index in the log. */
  leafIndex: number;
  /** Base64 audit path from the entry's leaf to the root of `treeHead`. */
  inclusionPath: string[];
  /** The signed tree head as a C2SP checkpoint (RFC 6962 note signature). */
  treeHead: string;
  /** The SCT the certificate embeds. */
  sct: Sct;
}

/** Options for {@linkcode TransparencyLog}. */
export interface TransparencyLogOptions {
  /**
   * The clock for tree head timestamps.
   * @default {() => new Date()}
   */
  now?: () => Date;
  /**
   * Where signature randomness comes from (ECDSA nonce hedging, Falcon-512).
   * @default {SYSTEM_RANDOM}
   */
  random?: RandomSource;
  /**
   * An open signer for `keys.falcon` that the caller owns and keeps open for the log's life.
   * @default {undefined} (the log opens one when it first co-signs, and closes it)
   */
  falconSigner?: FalconSigner;
}

/**
 * Generates log keys: an ECDSA P-256 key and the given Falcon pair.
 *
 * @param falcon The Falcon key pair to use.
 * @param random Where the ECDSA key comes from.
 * @returns The log keys.
 *
 * @example Creating a log
 * ```ts
 * import { generateLogKeys, TransparencyLog } from "./ct_log.ts";
 * import { generateFalconKeyPair } from "./falcon.ts";
 * using log = new TransparencyLog("example.com/log", await generateLogKeys(generateFalconKeyPair()));
 * console.log(log.size); // 0
 * ```
 */
export function generateLogKeys(
  falcon: FalconKeyPair,
  random: RandomSource = SYSTEM_RANDOM,
): Promise<LogKeys> {
  const { pkcs8, spki } = newP256Pkcs8(random);
  return Promise.resolve({ privateKey: pkcs8, spki, falcon });
}

/**
 * Signs for one log: SCTs, tree heads (the RFC 6962 note signature) and checkpoints (plus the
 * Falcon-512 co-signature), over whatever tree state it is given. Pure: keys, a clock and a random
 * source. {@linkcode TransparencyLog} and the CA's stored log both sign through it.
 *
 * @example Signing a tree head for a state held elsewhere
 * ```ts
 * import { generateLogKeys, LogSigner } from "./ct_log.ts";
 * import { generateFalconKeyPair } from "./falcon.ts";
 * using signer = new LogSigner("example.com/log", await generateLogKeys(generateFalconKeyPair()));
 * const note = await signer.signTreeHead(0, new Uint8Array(32));
 * console.log(note.split("\n")[1]); // "0"
 * ```
 */
export class LogSigner implements Disposable {
  /** The log origin (first checkpoint line and note key name). */
  readonly origin: string;
  /** Base64 log ID: SHA-256 of the log key's DER SubjectPublicKeyInfo. */
  readonly logId: string;
  /** Verifiers for this log's RFC 6962 and Falcon note keys. */
  readonly verifiers: readonly NoteVerifier[];
  readonly #keys: LogKeys;
  readonly #signer: EcdsaSigner;
  readonly #logId: Uint8Array;
  readonly #now: () => Date;
  readonly #random: RandomSource;
  #falcon: FalconSigner | undefined;
  readonly #ownsFalcon: boolean;

  /**
   * Creates the signer.
   *
   * @param origin The log origin, e.g. `stoq.trustchain/ca-1`.
   * @param keys The signing keys.
   * @param opts Clock, random source and Falcon signer.
   * @throws {TypeError} When `keys.spki` is not the public key of `keys.privateKey`.
   */
  constructor(
    origin: string,
    keys: LogKeys,
    opts: TransparencyLogOptions = {},
  ) {
    this.origin = origin;
    this.#keys = keys;
    this.#logId = logIdOf(keys.spki);
    this.logId = toBase64(this.#logId);
    this.#now = opts.now ?? (() => new Date());
    this.#random = opts.random ?? SYSTEM_RANDOM;
    this.#signer = p256Signer(keys.privateKey, this.#random);
    if (!equalBytes(this.#signer.spki, keys.spki)) {
      throw new TypeError(
        "Cannot create the log as 'keys.spki' is not the public key of 'keys.privateKey'",
      );
    }
    this.#falcon = opts.falconSigner;
    this.#ownsFalcon = opts.falconSigner === undefined;
    this.verifiers = [
      noteVerifier(origin, RFC6962_NOTE_TYPE, keys.spki),
      noteVerifier(origin, FALCON_NOTE_TYPE, keys.falcon.publicKey),
    ];
  }

  /** The log key's DER SubjectPublicKeyInfo. */
  get publicKey(): Uint8Array {
    return this.#keys.spki.slice();
  }

  /**
   * The C2SP vkey strings of the log key (type `0x05`, RFC 6962 tree heads) and of the Falcon
   * co-signing key (type `0xff`).
   */
  get vkeys(): { log: string; falcon: string } {
    return {
      log: noteVkey(this.origin, RFC6962_NOTE_TYPE, this.#keys.spki),
      falcon: noteVkey(
        this.origin,
        FALCON_NOTE_TYPE,
        this.#keys.falcon.publicKey,
      ),
    };
  }

  /**
   * Signs the tree head of `size` entries with root `rootHash` (RFC 6962 `TreeHeadSignature`).
   *
   * @param size The tree size.
   * @param rootHash The tree's root hash.
   * @returns The checkpoint note.
   */
  signTreeHead(size: number, rootHash: Uint8Array): Promise<string> {
    return this.#signHead(size, rootHash, false);
  }

  /**
   * Signs the tree head and co-signs it with Falcon-512, for publication.
   *
   * @param size The tree size.
   * @param rootHash The tree's root hash.
   * @returns The checkpoint note with two signature lines.
   */
  checkpoint(size: number, rootHash: Uint8Array): Promise<string> {
    return this.#signHead(size, rootHash, true);
  }

  #signHead(
    size: number,
    rootHash: Uint8Array,
    withFalcon: boolean,
  ): Promise<string> {
    const body = formatCheckpoint({
      origin: this.origin,
      treeSize: size,
      rootHash,
    });
    const signers = [
      rfc6962NoteSigner(
        this.origin,
        this.#signer,
        this.#keys.spki,
        () => this.#now().getTime(),
      ),
    ];
    if (withFalcon) {
      this.#falcon ??= FalconSigner.open(this.#keys.falcon.secretKey);
      signers.push(
        falconNoteSigner(
          this.origin,
          this.#falcon,
          this.#keys.falcon.publicKey,
          this.#random,
        ),
      );
    }
    return signNote(body, signers);
  }

  /**
   * Signs the SCT of a precertificate entry.
   *
   * @param entry The entry.
   * @returns The SCT.
   */
  sct(entry: PrecertEntry): Sct {
    return signSct(this.#signer, this.#logId, entry);
  }

  /** Frees the Falcon signer it opened itself; idempotent. */
  close(): void {
    if (this.#ownsFalcon) this.#falcon?.close();
    this.#falcon = undefined;
  }

  /** Same as {@linkcode LogSigner.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The integration step of a log whose storage sequences entries: appends entries to a tree given
 * only its compact range. A pure function of the previous range and the new entries.
 *
 * @param range The compact range of the tree before.
 * @param entries The new entries (static-ct-api `TileLeaf`s), their `leaf_index` counting on from
 * `range.size`.
 * @returns The compact range after and the complete subtrees the entries completed.
 * @throws {StoqError} `MALFORMED` when an entry is malformed.
 * @throws {RangeError} When an entry is out of place.
 *
 * @example Integrating one entry into the empty tree
 * ```ts
 * import { integrateEntries } from "./ct_log.ts";
 * import { tileLeaf, timestampedEntry } from "./rfc6962.ts";
 * const te = timestampedEntry({ timestamp: 1, issuerKeyHash: new Uint8Array(32), tbs: new Uint8Array([0x30, 0]), leafIndex: 0 });
 * const { range } = integrateEntries({ size: 0, hashes: [] }, [tileLeaf(te, new Uint8Array([0x30, 0]), [])]);
 * console.log(range.size); // 1
 * ```
 */
export function integrateEntries(
  range: CompactRange,
  entries: readonly Uint8Array[],
): { range: CompactRange; nodes: TreeNode[] } {
  const hashes = entries.map((entry, i) => {
    const leaf = parseTileLeaf(entry);
    if (leaf.leafIndex !== range.size + i) {
      throw new RangeError(
        `Cannot integrate entry with leaf_index ${leaf.leafIndex} at index ${
          range.size + i
        }`,
      );
    }
    return leafHash(merkleTreeLeaf(leaf.timestampedEntry));
  });
  return appendLeaves(range, hashes);
}

/**
 * An append-only RFC 6962 transparency log held in memory (hashes only).
 *
 * @example Logging a precertificate entry, signing its SCT and proving it
 * ```ts
 * import { generateLogKeys, leafHash, merkleTreeLeaf, tileLeaf, timestampedEntry, TransparencyLog, verifyTransparencyProof } from "../mod.ts";
 * import { generateFalconKeyPair } from "./falcon.ts";
 * using log = new TransparencyLog("example.com/log", await generateLogKeys(generateFalconKeyPair()));
 * const entry = { timestamp: Date.now(), issuerKeyHash: new Uint8Array(32), tbs: new Uint8Array([0x30, 0]), leafIndex: log.size };
 * const te = timestampedEntry(entry);
 * log.append(tileLeaf(te, new Uint8Array([0x30, 0]), []));
 * const proof = log.proof(entry.leafIndex, await log.signTreeHead(), log.sct(entry));
 * console.log((await verifyTransparencyProof(merkleTreeLeaf(te), proof, log.verifiers)).treeSize); // 1
 * ```
 */
export class TransparencyLog implements Disposable {
  /** The log origin (first checkpoint line and note key name). */
  readonly origin: string;
  /** Base64 log ID: SHA-256 of the log key's DER SubjectPublicKeyInfo. */
  readonly logId: string;
  /** Verifiers for this log's RFC 6962 and Falcon note keys. */
  readonly verifiers: readonly NoteVerifier[];
  readonly #signer: LogSigner;
  readonly #tree = new MerkleTree();

  /**
   * Creates the log, replaying existing entries.
   *
   * @param origin The log origin, e.g. `stoq.trustchain/ca-1`.
   * @param keys The signing keys.
   * @param entries Existing entries (`TileLeaf`s), in order.
   * @param opts Clock, random source and Falcon signer.
   * @throws {StoqError} `MALFORMED` when an entry is malformed.
   * @throws {RangeError} When an entry is out of place.
   */
  constructor(
    origin: string,
    keys: LogKeys,
    entries: Iterable<Uint8Array> = [],
    opts: TransparencyLogOptions = {},
  ) {
    this.#signer = new LogSigner(origin, keys, opts);
    this.origin = origin;
    this.logId = this.#signer.logId;
    this.verifiers = this.#signer.verifiers;
    for (const e of entries) this.append(e);
  }

  /** The number of entries. */
  get size(): number {
    return this.#tree.size;
  }

  /** The log key's DER SubjectPublicKeyInfo. */
  get publicKey(): Uint8Array {
    return this.#signer.publicKey;
  }

  /**
   * The C2SP vkey strings of the log key (type `0x05`, RFC 6962 tree heads) and of the Falcon
   * co-signing key (type `0xff`).
   */
  get vkeys(): { log: string; falcon: string } {
    return this.#signer.vkeys;
  }

  /**
   * Appends an entry.
   *
   * @param entry A static-ct-api `TileLeaf` whose `leaf_index` is the current size.
   * @returns The entry's index.
   * @throws {StoqError} `MALFORMED` when the entry is malformed.
   * @throws {RangeError} When its `leaf_index` is not the next index.
   */
  append(entry: Uint8Array): number {
    const leaf = parseTileLeaf(entry);
    if (leaf.leafIndex !== this.size) {
      throw new RangeError(
        `Cannot append entry with leaf_index ${leaf.leafIndex}: the next index is ${this.size}`,
      );
    }
    return this.#tree.append(leafHash(merkleTreeLeaf(leaf.timestampedEntry)));
  }

  /**
   * The root hash of the first `size` entries.
   *
   * @param size The tree size; defaults to the current size.
   * @returns The root hash.
   */
  root(size: number = this.size): Uint8Array {
    return this.#tree.root(size);
  }

  /**
   * The hash of the complete subtree of `2^level` entries starting at `index * 2^level`.
   *
   * @param level The subtree height.
   * @param index Which subtree.
   * @returns The hash.
   */
  subtreeHash(level: number, index: number): Uint8Array {
    return this.#tree.subtreeHash(level, index);
  }

  /**
   * Signs the current tree head (RFC 6962 `TreeHeadSignature`).
   *
   * @returns The checkpoint note.
   */
  signTreeHead(): Promise<string> {
    return this.#signer.signTreeHead(this.size, this.root());
  }

  /**
   * Signs the current tree head and co-signs it with Falcon-512, for publication.
   *
   * @returns The checkpoint note with two signature lines.
   */
  checkpoint(): Promise<string> {
    return this.#signer.checkpoint(this.size, this.root());
  }

  /**
   * Signs the SCT of a precertificate entry (appended, or about to be at `entry.leafIndex`).
   *
   * @param entry The entry.
   * @returns The SCT.
   */
  sct(entry: PrecertEntry): Sct {
    return this.#signer.sct(entry);
  }

  /**
   * Builds the proof bundle of entry `leafIndex` against a tree head this log signed.
   *
   * @param leafIndex The entry index.
   * @param treeHead A signed tree head (note) of this log whose size exceeds `leafIndex`.
   * @param sct The entry's SCT.
   * @returns The proof bundle.
   */
  proof(leafIndex: number, treeHead: string, sct: Sct): TransparencyProof {
    const { treeSize } = parseCheckpoint(
      treeHead.slice(0, treeHead.lastIndexOf("\n\n") + 1),
    );
    const path = this.#tree.inclusionProof(leafIndex, treeSize).map(toBase64);
    return { leafIndex, inclusionPath: path, treeHead, sct };
  }

  /**
   * RFC 9162 consistency proof between two sizes.
   *
   * @param first The older size.
   * @param second The newer size.
   * @returns The proof nodes.
   */
  consistencyProof(first: number, second: number = this.size): Uint8Array[] {
    return this.#tree.consistencyProof(first, second);
  }

  /** Frees the Falcon signer the log opened itself; idempotent. */
  close(): void {
    this.#signer.close();
  }

  /** Same as {@linkcode TransparencyLog.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Verifies that an entry is in a log: the tree head is a note signed by one of `verifiers`, and the
 * inclusion path leads from the entry's leaf hash to its root.
 *
 * @param entry The entry's RFC 6962 `MerkleTreeLeaf` (for a certificate, `certificateLogLeaf`).
 * @param proof The proof bundle.
 * @param verifiers The log's note verifiers.
 * @param origin The expected log origin; defaults to the verifiers' key name.
 * @returns The verified tree head fields.
 * @throws {StoqError} `PROOF_INVALID` when any part fails.
 *
 * @example See {@linkcode TransparencyLog}
 * ```ts
 * import { CertificateAuthority, certificateLogLeaf, MemoryCaStore, verifyTransparencyProof } from "../mod.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * const id = await ca.provision("app");
 * const leaf = certificateLogLeaf(id.der, ca.rootDer);
 * console.log((await verifyTransparencyProof(leaf, id.proof, ca.log.verifiers)).treeSize); // 1
 * ```
 */
export async function verifyTransparencyProof(
  entry: Uint8Array,
  proof: TransparencyProof,
  verifiers: readonly NoteVerifier[],
  origin: string | undefined = verifiers[0]?.name,
): Promise<Checkpoint> {
  if (
    typeof proof !== "object" || proof === null ||
    typeof proof.treeHead !== "string" ||
    !Array.isArray(proof.inclusionPath)
  ) {
    throw new StoqError(
      "PROOF_INVALID",
      "Transparency proof is malformed: expected a TransparencyProof",
    );
  }
  const { body } = await openNote(proof.treeHead, verifiers);
  const head = parseCheckpoint(body);
  if (head.origin !== origin) {
    throw new StoqError(
      "PROOF_INVALID",
      `Tree head is from log ${head.origin}, expected ${origin}`,
    );
  }
  let path: Uint8Array[];
  try {
    path = proof.inclusionPath.map(fromBase64);
  } catch (cause) {
    throw new StoqError("PROOF_INVALID", "Inclusion path is not base64", {
      cause,
    });
  }
  if (
    !verifyInclusion(
      leafHash(entry),
      proof.leafIndex,
      head.treeSize,
      path,
      head.rootHash,
    )
  ) {
    throw new StoqError(
      "PROOF_INVALID",
      "Inclusion proof does not lead to the signed tree head",
    );
  }
  return head;
}
