/**
 * How the SQL stores encode and decode record fields. Decoding checks every field, so a malformed
 * row (a bad disk, a hand edit) is a `StoqError` naming the record, never a `TypeError` or
 * `SyntaxError` later on.
 *
 * @module
 */

import { StoqError, type StoqErrorCode } from "../../errors.ts";
import type { RevocationSeal } from "../core/integrity.ts";
import { compactRangeIds } from "../core/merkle.ts";
import type { Sct } from "../core/rfc6962.ts";
import { concatBytes } from "../core/_bytes.ts";
import type {
  CertificateRecord,
  RevocationRecord,
  StoredTreeHead,
  TreeState,
} from "./store.ts";

type Code = Extract<StoqErrorCode, "CA_TAMPERED" | "LOG_TAMPERED">;

/** A malformed-record error. */
export function malformed(
  code: Code,
  what: string,
  cause?: unknown,
): StoqError {
  return new StoqError(
    code,
    `A stored record is malformed (${what}): restore the store from a backup`,
    cause === undefined ? {} : { cause },
  );
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A non-negative safe integer from a row value (SQLite number/bigint, PostgreSQL string). */
export function rowInt(value: unknown, code: Code, what: string): number {
  const n = typeof value === "bigint"
    ? Number(value)
    : typeof value === "string" && /^(0|[1-9][0-9]{0,15})$/.test(value)
    ? Number(value)
    : value;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
    throw malformed(code, `${what} is not a non-negative integer`);
  }
  return n;
}

/** Bytes from a row value. */
export function rowBytes(value: unknown, code: Code, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw malformed(code, `${what} is not bytes`);
  }
  return new Uint8Array(value);
}

/** Text from a row value. */
export function rowText(value: unknown, code: Code, what: string): string {
  if (typeof value !== "string") throw malformed(code, `${what} is not text`);
  return value;
}

/** The stored form of an SCT. */
export function encodeSctText(sct: Sct): string {
  return JSON.stringify({
    logId: sct.logId,
    timestamp: sct.timestamp,
    leafIndex: sct.leafIndex,
    signature: sct.signature,
  });
}

/** Decodes a stored SCT. */
export function decodeSctText(text: unknown, what: string): Sct {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(rowText(text, "CA_TAMPERED", what));
  } catch (cause) {
    if (cause instanceof StoqError) throw cause;
    throw malformed("CA_TAMPERED", `${what} is not JSON`, cause);
  }
  const ok = typeof v === "object" && v !== null &&
    typeof v.logId === "string" && v.logId.length === 44 && B64.test(v.logId) &&
    typeof v.signature === "string" && v.signature.length % 4 === 0 &&
    B64.test(v.signature) &&
    Number.isSafeInteger(v.timestamp) && (v.timestamp as number) >= 0 &&
    Number.isSafeInteger(v.leafIndex) && (v.leafIndex as number) >= 0;
  if (!ok) throw malformed("CA_TAMPERED", `${what} is not an SCT`);
  return {
    logId: v.logId as string,
    timestamp: v.timestamp as number,
    leafIndex: v.leafIndex as number,
    signature: v.signature as string,
  };
}

/** Decodes a certificate row (`serial`, `leaf_index`, `not_after`, `sct`, `mac`). */
export function decodeCertificateRow(
  row: Record<string, unknown>,
): CertificateRecord {
  const serial = rowText(row.serial, "CA_TAMPERED", "certificate serial");
  if (!/^[0-9a-f]{1,40}$/.test(serial)) {
    throw malformed("CA_TAMPERED", "certificate serial is not hex");
  }
  const what = `certificate ${serial}`;
  return {
    serial,
    leafIndex: rowInt(row.leaf_index, "CA_TAMPERED", `${what} leaf index`),
    notAfter: rowInt(row.not_after, "CA_TAMPERED", `${what} expiry`),
    sct: decodeSctText(row.sct, `${what} SCT`),
    mac: rowBytes(row.mac, "CA_TAMPERED", `${what} MAC`),
  };
}

/** Decodes a revocation row (`serial`, `reason`, `revoked_at`). */
export function decodeRevocationRow(
  row: Record<string, unknown>,
): RevocationRecord {
  const serial = rowText(row.serial, "CA_TAMPERED", "revocation serial");
  return {
    serial,
    reason: rowText(row.reason, "CA_TAMPERED", `revocation of ${serial}`),
    revokedAt: rowInt(
      row.revoked_at,
      "CA_TAMPERED",
      `revocation time of ${serial}`,
    ),
  };
}

/** The stored form of a revocation seal. */
export function encodeSealText(seal: RevocationSeal): string {
  return JSON.stringify({
    count: seal.count,
    chain: seal.chain,
    signature: seal.signature,
  });
}

/** Decodes a stored revocation seal. */
export function decodeSealText(text: unknown): RevocationSeal {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(rowText(text, "CA_TAMPERED", "revocation seal"));
  } catch (cause) {
    if (cause instanceof StoqError) throw cause;
    throw malformed("CA_TAMPERED", "revocation seal is not JSON", cause);
  }
  if (
    typeof v !== "object" || v === null || !Number.isSafeInteger(v.count) ||
    (v.count as number) < 0 || typeof v.chain !== "string" ||
    v.chain.length !== 44 || !B64.test(v.chain) ||
    typeof v.signature !== "string" || v.signature.length % 4 !== 0 ||
    !B64.test(v.signature)
  ) {
    throw malformed("CA_TAMPERED", "revocation seal");
  }
  return {
    count: v.count as number,
    chain: v.chain,
    signature: v.signature,
  };
}

/** Whether two seals are the same. */
export function sameSeal(
  a: RevocationSeal | undefined,
  b: RevocationSeal | undefined,
): boolean {
  return a === b || (a !== undefined && b !== undefined &&
    a.count === b.count && a.chain === b.chain &&
    a.signature === b.signature);
}

/** The stored form of a compact range's hashes: their concatenation. */
export function encodeHashes(hashes: readonly Uint8Array[]): Uint8Array {
  return concatBytes(...hashes);
}

/** Decodes a tree state row (`size`, `hashes`, `mac`). */
export function decodeTreeState(row: Record<string, unknown>): TreeState {
  const size = rowInt(row.size, "LOG_TAMPERED", "tree state size");
  const blob = rowBytes(row.hashes, "LOG_TAMPERED", "tree state hashes");
  const count = compactRangeIds(size).length;
  if (blob.length !== 32 * count) {
    throw malformed(
      "LOG_TAMPERED",
      `tree state of size ${size} holds ${blob.length} bytes of hashes, not ${
        32 * count
      }`,
    );
  }
  const hashes: Uint8Array[] = [];
  for (let i = 0; i < count; i++) hashes.push(blob.slice(32 * i, 32 * i + 32));
  return {
    range: { size, hashes },
    mac: rowBytes(row.mac ?? new Uint8Array(0), "LOG_TAMPERED", "tree MAC"),
  };
}

/** Decodes a tree head row (`tree_size`, `note`). */
export function decodeHeadRow(row: Record<string, unknown>): StoredTreeHead {
  return {
    size: rowInt(row.tree_size, "LOG_TAMPERED", "tree head size"),
    note: rowText(row.note, "LOG_TAMPERED", "tree head"),
  };
}

/** Decodes a node hash. */
export function decodeNodeHash(value: unknown): Uint8Array {
  const hash = rowBytes(value, "LOG_TAMPERED", "tree node");
  if (hash.length !== 32) {
    throw malformed("LOG_TAMPERED", "tree node is not a 32-byte hash");
  }
  return hash;
}

/** Checks that rows of `[start, …)` have consecutive indices; a gap is rewritten history. */
export function checkContiguous(
  indices: readonly unknown[],
  start: number,
): void {
  indices.forEach((index, i) => {
    if (rowInt(index, "LOG_TAMPERED", "leaf index") !== start + i) {
      throw new StoqError(
        "LOG_TAMPERED",
        `Log entry ${
          start + i
        } is missing from the store: restore it from a backup`,
      );
    }
  });
}

/** The one argument check every store applies to an index range. */
export function checkRange(start: number, end: number): void {
  if (
    !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 ||
    end < start
  ) {
    throw new RangeError(
      `Cannot read records as [${start}, ${end}) is not a range of indices`,
    );
  }
}
