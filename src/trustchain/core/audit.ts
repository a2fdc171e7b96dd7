/**
 * Pure checks a CA runs on what its store holds: the tree state, tree heads and entries against
 * their MACs and signatures, and each log entry against its certificate record. `StoredLog` and
 * the CA call them at open, on every read and in a full audit.
 *
 * @module
 */

import { StoqError } from "../../errors.ts";
import { integrateEntries } from "./ct_log.ts";
import {
  type CertificateFields,
  certificateMac,
  entryMac,
  macMatches,
  stateMac,
} from "./integrity.ts";
import type { CompactRange, TreeNode } from "./merkle.ts";
import * as der from "./_der.ts";
import { parseTileLeaf, PRECERT_POISON_OID } from "./rfc6962.ts";
import { canonicalSerial } from "./status.ts";
import { equalBytes } from "./_bytes.ts";

/**
 * A `LOG_TAMPERED` error naming what failed.
 *
 * @param why What does not hold.
 * @param cause The underlying error.
 * @returns The error.
 */
export function logTampered(why: string, cause?: unknown): StoqError {
  return new StoqError(
    "LOG_TAMPERED",
    `The CA's log fails verification (${why}): restore it from a backup`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * A `CA_TAMPERED` error naming what failed.
 *
 * @param why What does not hold.
 * @param cause The underlying error.
 * @returns The error.
 */
export function caTampered(why: string, cause?: unknown): StoqError {
  return new StoqError(
    "CA_TAMPERED",
    `The CA's state fails its integrity check (${why}): restore the store from a backup`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * Throws `LOG_TAMPERED` unless a stored tree state carries its MAC (the empty initial state
 * carries none).
 *
 * @param key The store MAC key.
 * @param state The stored state.
 */
export function checkStateMac(
  key: Uint8Array,
  state: { range: CompactRange; mac: Uint8Array },
): void {
  if (state.range.size === 0 && state.mac.length === 0) return;
  if (!macMatches(state.mac, stateMac(key, state.range))) {
    throw logTampered(
      `the committed tree state of size ${state.range.size} does not carry its MAC`,
    );
  }
}

/**
 * Throws `LOG_TAMPERED` unless a stored entry carries its MAC.
 *
 * @param key The store MAC key.
 * @param index The entry's index.
 * @param record The stored entry and MAC.
 */
export function checkEntryMac(
  key: Uint8Array,
  index: number,
  record: { entry: Uint8Array; mac: Uint8Array },
): void {
  if (!macMatches(record.mac, entryMac(key, index, record.entry))) {
    throw logTampered(`log entry ${index} does not carry its MAC`);
  }
}

/**
 * Throws `CA_TAMPERED` unless a certificate record (its SCT included) carries its MAC.
 *
 * @param key The store MAC key.
 * @param record The stored record.
 */
export function checkCertificateMac(
  key: Uint8Array,
  record: CertificateFields & { mac: Uint8Array },
): void {
  if (!macMatches(record.mac, certificateMac(key, record))) {
    throw caTampered(
      `the record of certificate ${record.serial} changed: its SCT, log index or expiry`,
    );
  }
}

/**
 * The integration step as the CA runs it inside the store's transaction: checks the committed
 * state's MAC and each new entry's, appends the entries (a pure function of the state and the
 * entries) and MACs the new state.
 *
 * @param key The store MAC key.
 * @param state The committed state.
 * @param entries The sequenced entries after it.
 * @returns The new state and the completed subtrees.
 * @throws {StoqError} `LOG_TAMPERED` when a MAC or an entry is bad.
 */
export function integrateVerified(
  key: Uint8Array,
  state: { range: CompactRange; mac: Uint8Array },
  entries: readonly { entry: Uint8Array; mac: Uint8Array }[],
): { state: { range: CompactRange; mac: Uint8Array }; nodes: TreeNode[] } {
  checkStateMac(key, state);
  entries.forEach((e, i) => checkEntryMac(key, state.range.size + i, e));
  let result;
  try {
    result = integrateEntries(state.range, entries.map((e) => e.entry));
  } catch (cause) {
    throw logTampered("a sequenced entry is malformed or misplaced", cause);
  }
  return {
    state: { range: result.range, mac: stateMac(key, result.range) },
    nodes: result.nodes,
  };
}

/**
 * Whether a log entry is this CA's precertificate of `serial`, consistent with its log leaf.
 *
 * @param entry The stored `TileLeaf`.
 * @param serial The certificate record's serial.
 * @param issuerKeyHash SHA-256 of the root's SubjectPublicKeyInfo.
 * @param issuerFingerprint SHA-256 of the root certificate.
 * @returns `true` when it is.
 */
export function entryIsCertificate(
  entry: Uint8Array,
  serial: string,
  issuerKeyHash: Uint8Array,
  issuerFingerprint: Uint8Array,
): boolean {
  try {
    const leaf = parseTileLeaf(entry);
    const pre = leaf.preCertificate!;
    return leaf.entryType === "precert" &&
      equalBytes(leaf.issuerKeyHash!, issuerKeyHash) &&
      leaf.chain.length === 1 &&
      equalBytes(leaf.chain[0], issuerFingerprint) &&
      canonicalSerial(der.tbsSerialHex(leaf.signed)) === serial &&
      equalBytes(
        der.removeExtension(der.certificateParts(pre).tbs, PRECERT_POISON_OID),
        leaf.signed,
      );
  } catch {
    return false;
  }
}
