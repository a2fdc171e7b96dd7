/**
 * What makes a CA's state at rest tamper-evident: the identity record's seal (an ECDSA signature by
 * the root key over every field, verifiable with the root certificate alone, before any private key
 * is unwrapped), the chain over revocations with its root-signed seal, and the MACs on the rows a CA
 * writes at every issuance (log entries, the tree state, certificate records) under a key derived
 * from the log's private key. Pure functions of their inputs.
 *
 * @module
 */

import { p256 } from "npm:@noble/curves@2.4.0/nist.js";
import { hkdf } from "npm:@noble/hashes@2.4.0/hkdf.js";
import { hmac } from "npm:@noble/hashes@2.4.0/hmac.js";
import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { type EcdsaSigner, p256Point } from "./ecdsa.ts";
import type { CompactRange } from "./merkle.ts";
import type { Sct } from "./rfc6962.ts";
import { concatBytes, equalBytes, framed, u64, utf8ToBytes } from "./_bytes.ts";

/** The fields of a stored certificate record that its MAC covers. */
export interface CertificateFields {
  /** Serial number, canonical lowercase hex. */
  serial: string;
  /** The certificate's log entry index. */
  leafIndex: number;
  /** Expiry, milliseconds since the epoch. */
  notAfter: number;
  /** The SCT the certificate embeds. */
  sct: Sct;
}

/** The fields of a revocation that the revocation chain covers. */
export interface RevocationFields {
  /** Serial number, canonical lowercase hex. */
  serial: string;
  /** RFC 5280 reason name. */
  reason: string;
  /** Milliseconds since the epoch. */
  revokedAt: number;
}

/** The root-signed head of the revocation chain: how many revocations, and their chained hash. */
export interface RevocationSeal {
  /** The number of revocations the chain covers. */
  count: number;
  /** Base64 chain hash after the last revocation (32 zero bytes for none). */
  chain: string;
  /** Base64 ECDSA P-256 signature (`r || s`) by the root key over {@linkcode revocationSealMessage}. */
  signature: string;
}

const _text = (s: string) => utf8ToBytes(s);

/**
 * The key that authenticates a CA's own rows: HKDF-SHA256 of the log's PKCS#8 private key, so
 * every process holding the CA's keys computes it and nothing without them can.
 *
 * @param logPrivateKey The log key, PKCS#8 DER.
 * @returns 32 bytes.
 */
export function storeMacKey(logPrivateKey: Uint8Array): Uint8Array {
  return hkdf(
    sha256,
    logPrivateKey,
    undefined,
    _text("stoq.trustchain/store-mac/v1"),
    32,
  );
}

function _mac(key: Uint8Array, kind: string, ...parts: Uint8Array[]) {
  return hmac(sha256, key, framed(_text(kind), ...parts));
}

/**
 * The MAC of a log entry at its index.
 *
 * @param key From {@linkcode storeMacKey}.
 * @param index The entry's leaf index.
 * @param entry The `TileLeaf` bytes.
 * @returns 32 bytes.
 */
export function entryMac(
  key: Uint8Array,
  index: number,
  entry: Uint8Array,
): Uint8Array {
  return _mac(key, "entry", u64(index), entry);
}

/**
 * The MAC of a committed tree state (its compact range).
 *
 * @param key From {@linkcode storeMacKey}.
 * @param range The compact range.
 * @returns 32 bytes.
 */
export function stateMac(key: Uint8Array, range: CompactRange): Uint8Array {
  return _mac(key, "tree-state", u64(range.size), ...range.hashes);
}

/**
 * The MAC of a certificate record, its SCT included.
 *
 * @param key From {@linkcode storeMacKey}.
 * @param record The record's fields.
 * @returns 32 bytes.
 */
export function certificateMac(
  key: Uint8Array,
  record: CertificateFields,
): Uint8Array {
  const { sct } = record;
  return _mac(
    key,
    "certificate",
    _text(record.serial),
    u64(record.leafIndex),
    u64(record.notAfter),
    _text(sct.logId),
    u64(sct.timestamp),
    u64(sct.leafIndex),
    _text(sct.signature),
  );
}

/**
 * Whether `mac` is the MAC `expected` computes (constant time).
 *
 * @param mac The stored MAC.
 * @param expected The recomputed MAC.
 * @returns `true` when they match.
 */
export function macMatches(mac: Uint8Array, expected: Uint8Array): boolean {
  return mac instanceof Uint8Array && equalBytes(mac, expected);
}

/** The revocation chain before the first revocation. */
export const EMPTY_CHAIN: Uint8Array = new Uint8Array(32);

/**
 * Extends the revocation chain by one revocation: `SHA-256(previous || framed fields)`.
 *
 * @param previous The chain hash before.
 * @param revocation The revocation.
 * @returns The chain hash after.
 */
export function chainRevocation(
  previous: Uint8Array,
  revocation: RevocationFields,
): Uint8Array {
  return sha256(concatBytes(
    previous,
    framed(
      _text(revocation.serial),
      _text(revocation.reason),
      u64(revocation.revokedAt),
    ),
  ));
}

/**
 * The bytes the root key signs for a revocation seal.
 *
 * @param name The CA name.
 * @param count The number of revocations.
 * @param chain The chain hash after them.
 * @returns The message.
 */
export function revocationSealMessage(
  name: string,
  count: number,
  chain: Uint8Array,
): Uint8Array {
  return framed(
    _text("stoq.trustchain/revocations/v1"),
    _text(name),
    u64(count),
    chain,
  );
}

/**
 * Signs a message with the root key for a seal.
 *
 * @param root The root key's signer.
 * @param message The message.
 * @returns The `r || s` signature.
 */
export function sealWith(root: EcdsaSigner, message: Uint8Array): Uint8Array {
  return root.sign(message);
}

/**
 * Verifies a seal with the root's public key; `false` for anything malformed.
 *
 * @param rootSpki The root's SubjectPublicKeyInfo.
 * @param message The sealed message.
 * @param signature The `r || s` signature.
 * @returns `true` when valid.
 */
export function sealVerifies(
  rootSpki: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    return p256.verify(signature, message, p256Point(rootSpki), {
      lowS: false,
    });
  } catch {
    return false;
  }
}
