/**
 * The audit a CA runs on its stored log when it opens: every stored tree head verifies and
 * matches the entries, every entry is a precertificate this CA issued for the certificate stored
 * at its index, and (optionally) the log still contains a checkpoint published earlier.
 *
 * @module
 */

import { StoqError } from "../../errors.ts";
import { openNote, parseCheckpoint } from "./checkpoint.ts";
import type { TransparencyLog } from "./ct_log.ts";
import * as der from "./_der.ts";
import { parseTileLeaf, PRECERT_POISON_OID } from "./rfc6962.ts";
import { canonicalSerial } from "./status.ts";
import { bytesToHex, equalBytes } from "./_bytes.ts";

function _tampered(why: string, cause?: unknown): StoqError {
  return new StoqError(
    "LOG_TAMPERED",
    `The CA's log fails verification (${why}): restore it from a backup`,
    cause === undefined ? {} : { cause },
  );
}

/** What the audit compares. */
export interface StoredLog {
  /** The log rebuilt from `entries`. */
  log: TransparencyLog;
  /** The stored tree heads, oldest first. */
  heads: readonly string[];
  /** The stored certificate rows. */
  certificates: readonly { serial: string; leafIndex: number }[];
  /** The stored entries (`TileLeaf`s), in index order. */
  entries: readonly Uint8Array[];
  /** SHA-256 of the CA root's SubjectPublicKeyInfo (the entries' issuer key hash). */
  issuerKeyHash: Uint8Array;
  /** SHA-256 of the CA root certificate (the entries' chain fingerprint). */
  issuerFingerprint: Uint8Array;
}

/**
 * Verifies a stored log.
 *
 * @param stored The log, its heads, certificate rows and entries.
 * @returns The latest tree head, if any.
 * @throws {StoqError} `LOG_TAMPERED` naming what does not hold.
 */
export async function auditLog(stored: StoredLog): Promise<string | undefined> {
  const { log, heads, certificates, entries } = stored;
  let last = 0;
  for (const head of heads) {
    let size: number;
    let root: Uint8Array;
    try {
      const { body } = await openNote(head, log.verifiers);
      ({ treeSize: size, rootHash: root } = parseCheckpoint(body));
    } catch (cause) {
      throw _tampered("a stored tree head does not verify", cause);
    }
    if (size <= last || size > log.size) {
      throw _tampered(`tree head of size ${size} out of order`);
    }
    if (bytesToHex(log.root(size)) !== bytesToHex(root)) {
      throw _tampered(`root of size ${size} does not match the entries`);
    }
    last = size;
  }
  // Each issuance writes entry and tree head together, so the last head covers every entry.
  if (last !== log.size) {
    throw _tampered(
      `last tree head has size ${last}, log has ${log.size} entries`,
    );
  }
  if (certificates.length !== log.size) {
    throw _tampered(`${certificates.length} certificates, ${log.size} entries`);
  }
  for (const c of certificates) {
    if (!_entryIsCertificate(stored, entries[c.leafIndex], c.serial)) {
      throw _tampered(`entry ${c.leafIndex} is not certificate ${c.serial}`);
    }
  }
  return heads.at(-1);
}

/** Whether an entry is this CA's precertificate of `serial`, consistent with its log leaf. */
function _entryIsCertificate(
  stored: StoredLog,
  entry: Uint8Array | undefined,
  serial: string,
): boolean {
  try {
    const leaf = parseTileLeaf(entry!);
    const pre = leaf.preCertificate!;
    return leaf.entryType === "precert" &&
      equalBytes(leaf.issuerKeyHash!, stored.issuerKeyHash) &&
      leaf.chain.length === 1 &&
      equalBytes(leaf.chain[0], stored.issuerFingerprint) &&
      canonicalSerial(der.tbsSerialHex(leaf.signed)) === serial &&
      equalBytes(
        der.removeExtension(der.certificateParts(pre).tbs, PRECERT_POISON_OID),
        leaf.signed,
      );
  } catch {
    return false;
  }
}

/**
 * Throws `LOG_TAMPERED` unless the log still holds the tree of a checkpoint it signed earlier.
 *
 * @param log The log.
 * @param checkpoint A checkpoint this log published.
 */
export async function checkTrustedCheckpoint(
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
      { cause },
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
