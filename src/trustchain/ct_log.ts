/**
 * The certificate-transparency log: an RFC 9162 Merkle tree of issued leaf certificates, signed tree
 * heads published as C2SP checkpoints, SCT-like promises and the proof bundle that travels with a
 * certificate.
 *
 * The log is pure: it holds entries in memory and signs with the keys it is given; persistence is
 * the {@linkcode CaStore}'s job.
 *
 * @module
 */

import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { StoqError } from "../errors.ts";
import {
  ED25519_NOTE_TYPE,
  ed25519NoteSigner,
  FALCON_NOTE_TYPE,
  falconNoteSigner,
  formatCheckpoint,
  type NoteVerifier,
  noteVerifier,
  noteVkey,
  openNote,
  parseCheckpoint,
  signNote,
} from "./checkpoint.ts";
import type { FalconKeyPair } from "./falcon.ts";
import { leafHash, MerkleTree, verifyInclusion } from "./merkle.ts";
import {
  buf,
  framed,
  fromBase64,
  toBase64,
  u64,
  utf8ToBytes,
} from "./_bytes.ts";

/** The keys a log signs with. */
export interface LogKeys {
  /** Ed25519 key pair (WebCrypto) for tree heads and SCTs. */
  ed25519: CryptoKeyPair;
  /** The raw 32-byte Ed25519 public key. */
  ed25519Public: Uint8Array;
  /** Falcon-512 key pair for checkpoint co-signatures. */
  falcon: FalconKeyPair;
}

/** A signed promise that an entry is in the log at `leafIndex` (RFC 6962 SCT, plus the index). */
export interface Sct {
  /** Base64 SHA-256 of the log's raw Ed25519 public key. */
  logId: string;
  /** Milliseconds since the Unix epoch. */
  timestamp: number;
  /** The entry's index in the log. */
  leafIndex: number;
  /** Base64 Ed25519 signature over the framed `("stoq-sct-v1", timestamp, leafIndex, leaf hash)`. */
  signature: string;
}

/**
 * The transparency proof that travels with a certificate: JSON-safe, so the transport can send it as
 * is on a stream.
 */
export interface TransparencyProof {
  /** The leaf certificate's index in the log. */
  leafIndex: number;
  /** Base64 audit path from the leaf to the root of `treeHead`. */
  inclusionPath: string[];
  /** The signed tree head as a C2SP signed note (checkpoint). */
  treeHead: string;
  /** The promise returned at issuance. */
  sct: Sct;
}

/**
 * Generates log keys: an Ed25519 pair and the given (or a new) Falcon pair.
 *
 * @param falcon The Falcon key pair to use.
 * @returns The log keys.
 *
 * @example Creating a log
 * ```ts
 * import { generateLogKeys, TransparencyLog } from "./ct_log.ts";
 * import { generateFalconKeyPair } from "./falcon.ts";
 * const log = new TransparencyLog("example/log", await generateLogKeys(generateFalconKeyPair()));
 * console.log(log.size); // 0
 * ```
 */
export async function generateLogKeys(falcon: FalconKeyPair): Promise<LogKeys> {
  const ed25519 = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const ed25519Public = new Uint8Array(
    await crypto.subtle.exportKey("raw", ed25519.publicKey),
  );
  return { ed25519, ed25519Public, falcon };
}

function _sctMessage(
  timestamp: number,
  leafIndex: number,
  entry: Uint8Array,
): Uint8Array {
  return framed(
    utf8ToBytes("stoq-sct-v1"),
    u64(timestamp),
    u64(leafIndex),
    leafHash(entry),
  );
}

/**
 * An append-only transparency log held in memory.
 *
 * @example Appending and proving
 * ```ts
 * import { generateLogKeys, TransparencyLog, verifyTransparencyProof } from "./ct_log.ts";
 * import { generateFalconKeyPair } from "./falcon.ts";
 * const log = new TransparencyLog("example/log", await generateLogKeys(generateFalconKeyPair()));
 * const entry = new Uint8Array([1, 2, 3]);
 * const index = log.append(entry);
 * const sct = await log.sct(entry, index, Date.now());
 * const proof = log.proof(index, await log.signTreeHead(), sct);
 * await verifyTransparencyProof(entry, proof, log.verifiers);
 * ```
 */
export class TransparencyLog {
  /** The log origin (first checkpoint line and note key name). */
  readonly origin: string;
  /** Base64 SHA-256 of the Ed25519 public key. */
  readonly logId: string;
  /** Verifiers for this log's Ed25519 and Falcon note keys. */
  readonly verifiers: readonly NoteVerifier[];
  readonly #keys: LogKeys;
  readonly #tree = new MerkleTree();

  /**
   * Creates the log, replaying existing entries.
   *
   * @param origin The log origin, e.g. `stoq.trustchain/ca-1`.
   * @param keys The signing keys.
   * @param entries Existing entries, in order.
   */
  constructor(
    origin: string,
    keys: LogKeys,
    entries: Iterable<Uint8Array> = [],
  ) {
    this.origin = origin;
    this.#keys = keys;
    this.logId = toBase64(sha256(keys.ed25519Public));
    this.verifiers = [
      noteVerifier(origin, ED25519_NOTE_TYPE, keys.ed25519Public),
      noteVerifier(origin, FALCON_NOTE_TYPE, keys.falcon.publicKey),
    ];
    for (const e of entries) this.append(e);
  }

  /** The number of entries. */
  get size(): number {
    return this.#tree.size;
  }

  /** The C2SP vkey strings of the Ed25519 key and the Falcon co-signing key. */
  get vkeys(): { ed25519: string; falcon: string } {
    return {
      ed25519: noteVkey(
        this.origin,
        ED25519_NOTE_TYPE,
        this.#keys.ed25519Public,
      ),
      falcon: noteVkey(
        this.origin,
        FALCON_NOTE_TYPE,
        this.#keys.falcon.publicKey,
      ),
    };
  }

  /**
   * Appends an entry.
   *
   * @param entry The entry bytes (a leaf certificate DER).
   * @returns The entry's index.
   */
  append(entry: Uint8Array): number {
    return this.#tree.append(leafHash(entry));
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
   * Signs the current tree head with Ed25519 (cheap; done at every issuance).
   *
   * @returns The checkpoint note.
   */
  signTreeHead(): Promise<string> {
    return this.#signHead(false);
  }

  /**
   * Signs the current tree head with Ed25519 and co-signs it with Falcon-512, for publication.
   *
   * @returns The checkpoint note with two signature lines.
   */
  checkpoint(): Promise<string> {
    return this.#signHead(true);
  }

  #signHead(withFalcon: boolean): Promise<string> {
    const body = formatCheckpoint({
      origin: this.origin,
      treeSize: this.size,
      rootHash: this.root(),
    });
    const keys = this.#keys;
    const signers = [
      ed25519NoteSigner(
        this.origin,
        keys.ed25519.privateKey,
        keys.ed25519Public,
      ),
    ];
    if (withFalcon) {
      signers.push(
        falconNoteSigner(
          this.origin,
          keys.falcon.secretKey,
          keys.falcon.publicKey,
        ),
      );
    }
    return signNote(body, signers);
  }

  /**
   * Signs an SCT for an appended entry.
   *
   * @param entry The entry bytes.
   * @param leafIndex Its index.
   * @param timestamp Milliseconds since the epoch.
   * @returns The SCT.
   */
  async sct(
    entry: Uint8Array,
    leafIndex: number,
    timestamp: number,
  ): Promise<Sct> {
    const sig = await crypto.subtle.sign(
      "Ed25519",
      this.#keys.ed25519.privateKey,
      buf(_sctMessage(timestamp, leafIndex, entry)),
    );
    return {
      logId: this.logId,
      timestamp,
      leafIndex,
      signature: toBase64(new Uint8Array(sig)),
    };
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
}

/**
 * Verifies an SCT against the entry and the log's raw Ed25519 public key.
 *
 * @param sct The SCT.
 * @param entry The entry bytes.
 * @param logPublicKey The raw Ed25519 public key.
 * @returns `true` when valid.
 *
 * @example Checking a promise
 * ```ts
 * import { generateLogKeys, TransparencyLog, verifySct } from "./ct_log.ts";
 * import { generateFalconKeyPair } from "./falcon.ts";
 * const keys = await generateLogKeys(generateFalconKeyPair());
 * const log = new TransparencyLog("example/log", keys);
 * const entry = new Uint8Array([9]);
 * const sct = await log.sct(entry, log.append(entry), 1000);
 * console.log(await verifySct(sct, entry, keys.ed25519Public)); // true
 * ```
 */
export async function verifySct(
  sct: Sct,
  entry: Uint8Array,
  logPublicKey: Uint8Array,
): Promise<boolean> {
  try {
    if (sct.logId !== toBase64(sha256(logPublicKey))) return false;
    const key = await crypto.subtle.importKey(
      "raw",
      buf(logPublicKey),
      "Ed25519",
      false,
      ["verify"],
    );
    return await crypto.subtle.verify(
      "Ed25519",
      key,
      buf(fromBase64(sct.signature)),
      buf(_sctMessage(sct.timestamp, sct.leafIndex, entry)),
    );
  } catch {
    return false;
  }
}

/**
 * Verifies that `entry` is in a log: the tree head is a note signed by one of `verifiers`, and the
 * inclusion path leads from the entry's leaf hash to its root.
 *
 * @param entry The entry bytes (leaf certificate DER).
 * @param proof The proof bundle.
 * @param verifiers The log's note verifiers.
 * @param origin The expected log origin; defaults to the verifiers' key name.
 * @returns The verified tree head fields.
 * @throws {StoqError} `PROOF_INVALID` when any part fails.
 *
 * @example See {@linkcode TransparencyLog}
 * ```ts
 * import { generateLogKeys, TransparencyLog, verifyTransparencyProof } from "./ct_log.ts";
 * import { generateFalconKeyPair } from "./falcon.ts";
 * const log = new TransparencyLog("example/log", await generateLogKeys(generateFalconKeyPair()));
 * const entry = new Uint8Array([1]);
 * const i = log.append(entry);
 * const proof = log.proof(i, await log.signTreeHead(), await log.sct(entry, i, 0));
 * console.log((await verifyTransparencyProof(entry, proof, log.verifiers)).treeSize); // 1
 * ```
 */
export async function verifyTransparencyProof(
  entry: Uint8Array,
  proof: TransparencyProof,
  verifiers: readonly NoteVerifier[],
  origin: string | undefined = verifiers[0]?.name,
): Promise<{ treeSize: number; rootHash: Uint8Array }> {
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
