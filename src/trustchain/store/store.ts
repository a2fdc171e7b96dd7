/**
 * What a CA needs from storage ({@linkcode CaStore}) and the records it keeps. Implementations:
 * `SqliteCaStore` (one database file per CA) and `MemoryCaStore`.
 *
 * @module
 */

import type { Sct } from "../core/rfc6962.ts";
import type { CaIdentityRecord } from "../core/identity.ts";

export type { CaIdentityRecord };

/** One issued certificate, as stored. Its precertificate is the log entry at `leafIndex`. */
export interface CertificateRecord {
  /** Serial number, lowercase hex as `@peculiar/x509` prints it. */
  serial: string;
  /** Index of the certificate's DER in the log. */
  leafIndex: number;
  /** Expiry, milliseconds since the epoch. */
  notAfter: number;
  /** The SCT returned at issuance. */
  sct: Sct;
}

/** A revocation. */
export interface RevocationRecord {
  /** Serial number. */
  serial: string;
  /** RFC 5280 reason name, e.g. `keyCompromise`. */
  reason: string;
  /** Milliseconds since the epoch. */
  revokedAt: number;
}

/** Row counts, used to show that a refused request changed nothing. */
export interface StoreCounts {
  /** Issued certificates. */
  certificates: number;
  /** Log entries. */
  entries: number;
  /** Stored signed tree heads. */
  treeHeads: number;
  /** Revocations. */
  revocations: number;
}

/**
 * What a CA needs from storage. Async so a server database can stand in for SQLite later.
 *
 * `commitIssuance` must be atomic: the certificate row, its log entry and the new signed tree head
 * are written together or not at all.
 *
 * @example Using the in-memory store
 * ```ts
 * import { MemoryCaStore } from "./memory.ts";
 * const store = new MemoryCaStore();
 * console.log((await store.counts()).entries); // 0
 * ```
 */
export interface CaStore {
  /** The stored identity, or `undefined` for a fresh store. */
  loadIdentity(): Promise<CaIdentityRecord | undefined>;
  /** Stores the identity of a new CA (once). */
  saveIdentity(identity: CaIdentityRecord): Promise<void>;
  /**
   * Log entries (static-ct-api `TileLeaf`s) in index order: all of them, or those in
   * `[start, end)`.
   */
  entries(start?: number, end?: number): Promise<Uint8Array[]>;
  /** All signed tree heads (checkpoint notes), oldest first. */
  treeHeads(): Promise<string[]>;
  /** All certificate records. */
  certificates(): Promise<CertificateRecord[]>;
  /** The certificate record for a serial, if issued. */
  certificate(serial: string): Promise<CertificateRecord | undefined>;
  /** Atomically records a certificate, appends its DER to the log and stores the new tree head. */
  commitIssuance(
    record: CertificateRecord,
    entry: Uint8Array,
    treeHead: string,
  ): Promise<void>;
  /** Records a revocation (idempotent: the first one wins). */
  revoke(revocation: RevocationRecord): Promise<void>;
  /** The revocation of a serial, if any. */
  revocation(serial: string): Promise<RevocationRecord | undefined>;
  /** All revocations. */
  revocations(): Promise<RevocationRecord[]>;
  /** Row counts. */
  counts(): Promise<StoreCounts>;
  /** Releases the store; idempotent. */
  close(): void;
}
