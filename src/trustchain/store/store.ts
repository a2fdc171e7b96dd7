/**
 * What a CA needs from storage ({@linkcode CaStore}) and the records it keeps. Implementations:
 * `SqliteCaStore` (one database file per CA, the default), `PostgresCaStore` (one PostgreSQL
 * database shared by several CA processes) and `MemoryCaStore` (tests and examples).
 *
 * The store sequences, as logs built for scale do (Tessera, Trillian): it assigns leaf indices
 * inside the issuing transaction ({@linkcode CaStore.sequence}), and integrates sequenced entries
 * into the tree in another ({@linkcode CaStore.integrate}), running a pure function of the
 * committed tree state and the new entries while it holds the tree. Tree heads are signed by the
 * CA over committed states only. Start-up reads the committed state (the tree's compact range),
 * never the whole log; proofs read stored node hashes.
 *
 * @module
 */

import type { CompactRange, NodeId, TreeNode } from "../core/merkle.ts";
import type { RevocationSeal } from "../core/integrity.ts";
import type { Sct } from "../core/rfc6962.ts";

export type { RevocationSeal };

/** One issued certificate, as stored. Its precertificate is the log entry at `leafIndex`. */
export interface CertificateRecord {
  /** Serial number, canonical lowercase hex. */
  serial: string;
  /** Index of the certificate's precertificate entry in the log. */
  leafIndex: number;
  /** Expiry, milliseconds since the epoch. */
  notAfter: number;
  /** The SCT returned at issuance. */
  sct: Sct;
  /** The CA's MAC over the fields above (`certificateMac`). */
  mac: Uint8Array;
}

/** A revocation. */
export interface RevocationRecord {
  /** Serial number, canonical lowercase hex. */
  serial: string;
  /** RFC 5280 reason name, e.g. `keyCompromise`. */
  reason: string;
  /** Milliseconds since the epoch. */
  revokedAt: number;
}

/** A log entry (a static-ct-api `TileLeaf`) and the CA's MAC over it and its index. */
export interface LogEntryRecord {
  /** The `TileLeaf` bytes. */
  entry: Uint8Array;
  /** The CA's MAC (`entryMac`). */
  mac: Uint8Array;
}

/** The committed tree: its compact range and the CA's MAC over it (empty for the initial state). */
export interface TreeState {
  /** The compact range of the integrated entries. */
  range: CompactRange;
  /** The CA's MAC (`stateMac`); empty only for the empty tree nobody integrated into yet. */
  mac: Uint8Array;
}

/** A signed tree head (a checkpoint note) and its size. */
export interface StoredTreeHead {
  /** The tree size it signs. */
  size: number;
  /** The note. */
  note: string;
}

/** What the CA stores for one sequenced issuance. */
export interface SequencedIssuance {
  /** The log entry at the assigned index. */
  entry: LogEntryRecord;
  /** The certificate record (its `leafIndex` is the assigned index). */
  certificate: CertificateRecord;
}

/** What one integration step writes. */
export interface Integration {
  /** The new committed state. */
  state: TreeState;
  /** The complete subtrees the new entries completed. */
  nodes: TreeNode[];
}

/** The outcome of {@linkcode CaStore.revoke}. */
export type RevokeOutcome =
  /** Stored, with the new seal. */
  | "revoked"
  /** The serial was revoked already; nothing changed. */
  | "exists"
  /** The stored seal is not the expected one (another process revoked meanwhile); nothing changed. */
  | "conflict";

/** Row counts, used to show that a refused request changed nothing. */
export interface StoreCounts {
  /** Issued certificates. */
  certificates: number;
  /** Sequenced log entries. */
  entries: number;
  /** Stored signed tree heads. */
  treeHeads: number;
  /** Revocations. */
  revocations: number;
}

/**
 * What a CA needs from storage. Several CA processes may share one store (PostgreSQL, or SQLite on
 * one machine): every write that must be ordered takes the store's lock for its transaction.
 *
 * Records are written and MACed by the CA; the store keeps them opaque. A store throws `StoqError`
 * `STORE_ERROR` when the database fails, `LOG_TAMPERED` or `CA_TAMPERED` when a row it reads is
 * malformed.
 *
 * @example Using the in-memory store
 * ```ts
 * import { MemoryCaStore } from "./memory.ts";
 * const store = new MemoryCaStore();
 * console.log((await store.counts()).entries); // 0
 * await store.close();
 * ```
 */
export interface CaStore {
  /** The stored identity record (JSON text), or `undefined` for a fresh store. */
  loadIdentity(): Promise<string | undefined>;
  /**
   * Stores the identity record of a new CA unless the store already holds one (another process
   * may have created the CA first).
   *
   * @returns The record now stored: `record`, or the one that was there.
   */
  saveIdentity(record: string): Promise<string>;
  /**
   * Sequences `count` issuances in one transaction: takes the sequencing lock, reads the next leaf
   * index, calls `build(first)` for what to store at `first … first + count - 1`, stores it and
   * commits. Nothing is stored when `build` throws or a serial is taken.
   *
   * @returns The first assigned index.
   */
  sequence(
    count: number,
    build: (first: number) => SequencedIssuance[],
  ): Promise<number>;
  /** How many entries are sequenced (the next leaf index). */
  sequencedSize(): Promise<number>;
  /** The committed tree state. */
  treeState(): Promise<TreeState>;
  /**
   * One integration step in one transaction: takes the tree lock, reads the committed state and up
   * to `limit` sequenced entries after it, and, when there are any, stores what `integrate`
   * returns for them (a pure function) and commits.
   *
   * @returns The committed state afterwards.
   */
  integrate(
    limit: number,
    integrate: (state: TreeState, entries: LogEntryRecord[]) => Integration,
  ): Promise<TreeState>;
  /** Stored node hashes by id, in order (`undefined` for a node not stored). */
  nodes(ids: readonly NodeId[]): Promise<(Uint8Array | undefined)[]>;
  /** The stored node hashes at `level` with indices `[start, end)`, in order. */
  nodeRange(level: number, start: number, end: number): Promise<Uint8Array[]>;
  /**
   * Stores a signed tree head unless one of that size is stored.
   *
   * @returns The head now stored for that size.
   */
  addTreeHead(head: StoredTreeHead): Promise<StoredTreeHead>;
  /** The stored tree head of the largest size, if any. */
  latestTreeHead(): Promise<StoredTreeHead | undefined>;
  /** The stored tree heads with sizes in `[min, max]`, smallest first. */
  treeHeads(min?: number, max?: number): Promise<StoredTreeHead[]>;
  /** The sequenced entries `[start, end)`, in index order (a missing one is `LOG_TAMPERED`). */
  entries(start: number, end: number): Promise<LogEntryRecord[]>;
  /** The certificate records of the entries `[start, end)`, in index order. */
  certificates(start: number, end: number): Promise<CertificateRecord[]>;
  /** The certificate record for a serial, if issued. */
  certificate(serial: string): Promise<CertificateRecord | undefined>;
  /**
   * Records a revocation and the revocation chain's new seal, if the stored seal is still
   * `expected` (`undefined`: none yet) and the serial is not revoked yet.
   */
  revoke(
    revocation: RevocationRecord,
    expected: RevocationSeal | undefined,
    next: RevocationSeal,
  ): Promise<RevokeOutcome>;
  /** The revocation chain's seal, if anything was revoked. */
  revocationSeal(): Promise<RevocationSeal | undefined>;
  /** All revocations, in the order they were recorded. */
  revocations(): Promise<RevocationRecord[]>;
  /** Row counts. */
  counts(): Promise<StoreCounts>;
  /** Releases the store (drains a connection pool); idempotent. */
  close(): Promise<void>;
}
