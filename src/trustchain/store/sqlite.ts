/**
 * A {@linkcode CaStore} in one SQLite database file per CA (`node:sqlite`, WAL mode). Sequencing
 * and integration are `BEGIN IMMEDIATE` transactions, so several processes on one machine may
 * share the file.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { StoqError } from "../../errors.ts";
import type { NodeId, TreeNode } from "../core/merkle.ts";
import {
  checkContiguous,
  checkRange,
  decodeCertificateRow,
  decodeHeadRow,
  decodeNodeHash,
  decodeRevocationRow,
  decodeSealText,
  decodeTreeState,
  encodeHashes,
  encodeSctText,
  encodeSealText,
  rowBytes,
  rowInt,
  rowText,
  sameSeal,
} from "./records.ts";
import type {
  CaStore,
  CertificateRecord,
  Integration,
  LogEntryRecord,
  RevocationRecord,
  RevocationSeal,
  RevokeOutcome,
  SequencedIssuance,
  StoreCounts,
  StoredTreeHead,
  TreeState,
} from "./store.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS identity (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log_sequence (id INTEGER PRIMARY KEY CHECK (id = 1), next_index INTEGER NOT NULL);
INSERT OR IGNORE INTO log_sequence (id, next_index) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS log_entries (
  leaf_index INTEGER PRIMARY KEY, entry BLOB NOT NULL, mac BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
  serial TEXT PRIMARY KEY,
  leaf_index INTEGER NOT NULL UNIQUE REFERENCES log_entries (leaf_index),
  not_after INTEGER NOT NULL,
  sct TEXT NOT NULL,
  mac BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tree_state (
  id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, hashes BLOB NOT NULL, mac BLOB NOT NULL
);
INSERT OR IGNORE INTO tree_state (id, size, hashes, mac) VALUES (1, 0, x'', x'');
CREATE TABLE IF NOT EXISTS tree_nodes (
  level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree_heads (tree_size INTEGER PRIMARY KEY, note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (
  seq INTEGER PRIMARY KEY,
  serial TEXT NOT NULL UNIQUE REFERENCES certificates (serial),
  reason TEXT NOT NULL,
  revoked_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revocation_seal (id INTEGER PRIMARY KEY CHECK (id = 1), seal TEXT NOT NULL);
`;

type Row = Record<string, unknown>;

/** What a database of the earlier format (identity format 2) holds. */
export interface LegacyCaData {
  /** The log entries, by index. */
  entries: Uint8Array[];
  /** The certificate records (without MACs), by index. */
  certificates: Omit<CertificateRecord, "mac">[];
  /** The signed tree heads, by size. */
  heads: StoredTreeHead[];
  /** The revocations, in the order they were made. */
  revocations: RevocationRecord[];
}

/** What {@linkcode SqliteCaStore.completeMigration} writes. */
export interface LegacyMigration {
  /** The sealed identity record (JSON). */
  identity: string;
  /** Each entry's MAC, by index. */
  entryMacs: Uint8Array[];
  /** Each certificate record's MAC. */
  certificateMacs: { serial: string; mac: Uint8Array }[];
  /** The revocations, in chain order. */
  revocations: RevocationRecord[];
  /** The revocation chain's seal, if anything was revoked. */
  seal?: RevocationSeal;
  /** Every complete subtree of the log. */
  nodes: TreeNode[];
  /** The committed tree. */
  state: TreeState;
}
type Param = string | number | Uint8Array | null;

/** The legacy rows of a database of the earlier format, `undefined` for a current one (internal). */
export let readLegacySqlite: (
  store: SqliteCaStore,
) => Promise<LegacyCaData | undefined>;
/** Migrates a database of the earlier format in one transaction (internal). */
export let completeSqliteMigration: (
  store: SqliteCaStore,
  migration: LegacyMigration,
) => Promise<void>;

/**
 * A {@linkcode CaStore} in one SQLite database file (`node:sqlite`), in WAL mode. Each sequencing
 * and each integration step is one transaction, so a process killed mid-issuance leaves the last
 * committed state.
 *
 * @example Opening a CA database
 * ```ts
 * import { SqliteCaStore } from "./sqlite.ts";
 * const dir = await Deno.makeTempDir();
 * const store = new SqliteCaStore(`${dir}/ca.db`);
 * console.log((await store.counts()).certificates); // 0
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqliteCaStore implements CaStore {
  static {
    readLegacySqlite = (store) => store.#readLegacy();
    completeSqliteMigration = (store, m) => store.#completeMigration(m);
  }

  /** The database file path. */
  readonly path: string;
  #db: DatabaseSync | undefined;
  #legacy = false;
  // Prepared statements, kept for the life of the connection (issuance runs the same few).
  #statements = new Map<string, StatementSync>();

  /**
   * Opens (creating if needed) the database.
   *
   * @param path The database file; one file per CA.
   * @throws {TypeError} When `path` is not a non-empty string.
   * @throws {StoqError} `STORE_ERROR` when the file cannot be opened as a SQLite database.
   */
  constructor(path: string) {
    if (typeof path !== "string" || path.length === 0) {
      throw new TypeError(
        `Cannot open CA store as 'path' must be a file path: current value is ${path}`,
      );
    }
    this.path = path;
    try {
      this.#db = new DatabaseSync(path);
      this.#db.exec(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
      );
      this.#db.exec("PRAGMA busy_timeout=10000;");
      // A database an earlier TrustChain wrote (no MACs) is left as it is until the CA
      // migrates it (see readLegacy).
      const columns = this.#db.prepare("PRAGMA table_info(log_entries)")
        .all() as Row[];
      this.#legacy = columns.length > 0 &&
        !columns.some((c) => c.name === "mac");
      if (!this.#legacy) this.#db.exec(SCHEMA);
    } catch (cause) {
      this.#db?.close();
      this.#db = undefined;
      throw new StoqError(
        "STORE_ERROR",
        `Cannot open CA database ${path}: is it a SQLite file?`,
        { cause },
      );
    }
  }

  get #conn(): DatabaseSync {
    if (!this.#db) {
      throw new StoqError(
        "CLOSED",
        "The CA store is closed: open a new SqliteCaStore",
      );
    }
    return this.#db;
  }

  #prepare(sql: string): StatementSync {
    const conn = this.#conn;
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = conn.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  #all(sql: string, ...params: Param[]): Row[] {
    return this.#prepare(sql).all(...params) as Row[];
  }

  #run(sql: string, ...params: Param[]): void {
    this.#prepare(sql).run(...params);
  }

  /** Stores an integrated tree: its new nodes and its state. */
  #writeTree(state: TreeState, nodes: TreeNode[]): void {
    for (const n of nodes) {
      this.#run(
        "INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)",
        n.level,
        n.index,
        n.hash,
      );
    }
    this.#run(
      "UPDATE tree_state SET size = ?, hashes = ?, mac = ? WHERE id = 1",
      state.range.size,
      encodeHashes(state.range.hashes),
      state.mac,
    );
  }

  // Runs one operation as a promise: database failures become STORE_ERROR, StoqErrors and
  // argument errors pass through.
  #op<T>(what: string, fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (cause) {
      if (
        cause instanceof StoqError || cause instanceof TypeError ||
        cause instanceof RangeError
      ) {
        return Promise.reject(cause);
      }
      return Promise.reject(
        new StoqError("STORE_ERROR", `CA database ${this.path}: ${what}`, {
          cause,
        }),
      );
    }
  }

  // One write transaction, taking SQLite's write lock first (BEGIN IMMEDIATE).
  #transaction<T>(fn: () => T): T {
    const db = this.#conn;
    db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      db.exec("COMMIT");
      return out;
    } catch (err) {
      db.exec("ROLLBACK");
      throw err;
    }
  }

  /** The stored identity record, or `undefined` for a fresh store. */
  loadIdentity(): Promise<string | undefined> {
    return this.#op("cannot read the identity", () => {
      const [row] = this.#all("SELECT record FROM identity WHERE id = 1");
      return row ? rowText(row.record, "CA_TAMPERED", "identity") : undefined;
    });
  }

  /** Stores the identity record unless one is stored; returns the stored one. */
  saveIdentity(record: string): Promise<string> {
    return this.#op("cannot save the identity", () => {
      this.#run(
        "INSERT OR IGNORE INTO identity (id, record) VALUES (1, ?)",
        record,
      );
      const [row] = this.#all("SELECT record FROM identity WHERE id = 1");
      return rowText(row?.record, "CA_TAMPERED", "identity");
    });
  }

  /** Sequences issuances at the next indices, in one transaction. */
  sequence(
    count: number,
    build: (first: number) => SequencedIssuance[],
  ): Promise<number> {
    return this.#op(
      "cannot record the issuance (rolled back)",
      () =>
        this.#transaction(() => {
          const [row] = this.#all(
            "SELECT next_index FROM log_sequence WHERE id = 1",
          );
          const first = rowInt(row?.next_index, "LOG_TAMPERED", "next index");
          const batch = build(first);
          if (batch.length !== count) {
            throw new RangeError(`Cannot sequence ${batch.length} of ${count}`);
          }
          batch.forEach(({ entry, certificate: c }, i) => {
            if (c.leafIndex !== first + i) {
              throw new RangeError("Cannot sequence a misnumbered record");
            }
            this.#run(
              "INSERT INTO log_entries (leaf_index, entry, mac) VALUES (?, ?, ?)",
              first + i,
              entry.entry,
              entry.mac,
            );
            this.#run(
              "INSERT INTO certificates (serial, leaf_index, not_after, sct, mac) VALUES (?, ?, ?, ?, ?)",
              c.serial,
              c.leafIndex,
              c.notAfter,
              encodeSctText(c.sct),
              c.mac,
            );
          });
          this.#run(
            "UPDATE log_sequence SET next_index = ? WHERE id = 1",
            first + count,
          );
          return first;
        }),
    );
  }

  /** How many entries are sequenced. */
  sequencedSize(): Promise<number> {
    return this.#op("cannot read the sequence", () => {
      const [row] = this.#all(
        "SELECT next_index FROM log_sequence WHERE id = 1",
      );
      return rowInt(row?.next_index, "LOG_TAMPERED", "next index");
    });
  }

  #state(): TreeState {
    const [row] = this.#all(
      "SELECT size, hashes, mac FROM tree_state WHERE id = 1",
    );
    if (!row) {
      throw new StoqError(
        "LOG_TAMPERED",
        "The tree state is missing from the store: restore it from a backup",
      );
    }
    return decodeTreeState(row);
  }

  /** The committed tree state. */
  treeState(): Promise<TreeState> {
    return this.#op("cannot read the tree state", () => this.#state());
  }

  /** One integration step, in one transaction. */
  integrate(
    limit: number,
    integrate: (state: TreeState, entries: LogEntryRecord[]) => Integration,
  ): Promise<TreeState> {
    return this.#op(
      "cannot integrate (rolled back)",
      () =>
        this.#transaction(() => {
          const before = this.#state();
          const size = before.range.size;
          const rows = this.#all(
            "SELECT leaf_index, entry, mac FROM log_entries WHERE leaf_index >= ? ORDER BY leaf_index LIMIT ?",
            size,
            limit,
          );
          if (rows.length === 0) return before;
          checkContiguous(rows.map((r) => r.leaf_index), size);
          const { state, nodes } = integrate(
            before,
            rows.map((r) => ({
              entry: rowBytes(r.entry, "LOG_TAMPERED", "log entry"),
              mac: rowBytes(r.mac, "LOG_TAMPERED", "log entry MAC"),
            })),
          );
          this.#writeTree(state, nodes);
          return state;
        }),
    );
  }

  /** Stored node hashes by id. */
  nodes(ids: readonly NodeId[]): Promise<(Uint8Array | undefined)[]> {
    return this.#op(
      "cannot read tree nodes",
      () =>
        ids.map(({ level, index }) => {
          const [row] = this.#all(
            "SELECT hash FROM tree_nodes WHERE level = ? AND idx = ?",
            level,
            index,
          );
          return row ? decodeNodeHash(row.hash) : undefined;
        }),
    );
  }

  /** Stored node hashes at one level, indices `[start, end)`. */
  nodeRange(level: number, start: number, end: number): Promise<Uint8Array[]> {
    return this.#op("cannot read tree nodes", () => {
      checkRange(start, end);
      const rows = this.#all(
        "SELECT idx, hash FROM tree_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
        level,
        start,
        end,
      );
      checkContiguous(rows.map((r) => r.idx), start);
      return rows.map((r) => decodeNodeHash(r.hash));
    });
  }

  /** Stores a tree head unless one of that size is stored; returns the stored one. */
  addTreeHead(head: StoredTreeHead): Promise<StoredTreeHead> {
    return this.#op("cannot store the tree head", () => {
      this.#run(
        "INSERT OR IGNORE INTO tree_heads (tree_size, note) VALUES (?, ?)",
        head.size,
        head.note,
      );
      const [row] = this.#all(
        "SELECT tree_size, note FROM tree_heads WHERE tree_size = ?",
        head.size,
      );
      return decodeHeadRow(row ?? {});
    });
  }

  /** The stored tree head of the largest size. */
  latestTreeHead(): Promise<StoredTreeHead | undefined> {
    return this.#op("cannot read tree heads", () => {
      const [row] = this.#all(
        "SELECT tree_size, note FROM tree_heads ORDER BY tree_size DESC LIMIT 1",
      );
      return row ? decodeHeadRow(row) : undefined;
    });
  }

  /** Stored tree heads with sizes in `[min, max]`, smallest first. */
  treeHeads(min = 0, max = Number.MAX_SAFE_INTEGER): Promise<StoredTreeHead[]> {
    return this.#op("cannot read tree heads", () =>
      this.#all(
        "SELECT tree_size, note FROM tree_heads WHERE tree_size >= ? AND tree_size <= ? ORDER BY tree_size",
        min,
        max,
      ).map(decodeHeadRow));
  }

  /** Sequenced entries `[start, end)`. */
  entries(start: number, end: number): Promise<LogEntryRecord[]> {
    return this.#op("cannot read log entries", () => {
      checkRange(start, end);
      const rows = this.#all(
        "SELECT leaf_index, entry, mac FROM log_entries WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
        start,
        end,
      );
      checkContiguous(rows.map((r) => r.leaf_index), start);
      return rows.map((r) => ({
        entry: rowBytes(r.entry, "LOG_TAMPERED", "log entry"),
        mac: rowBytes(r.mac, "LOG_TAMPERED", "log entry MAC"),
      }));
    });
  }

  /** Certificate records of entries `[start, end)`. */
  certificates(start: number, end: number): Promise<CertificateRecord[]> {
    return this.#op("cannot read certificates", () => {
      checkRange(start, end);
      return this.#all(
        "SELECT * FROM certificates WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
        start,
        end,
      ).map(decodeCertificateRow);
    });
  }

  /** The certificate record for a serial. */
  certificate(serial: string): Promise<CertificateRecord | undefined> {
    return this.#op("cannot read a certificate", () => {
      const [row] = this.#all(
        "SELECT * FROM certificates WHERE serial = ?",
        serial,
      );
      return row ? decodeCertificateRow(row) : undefined;
    });
  }

  #seal(): RevocationSeal | undefined {
    const [row] = this.#all("SELECT seal FROM revocation_seal WHERE id = 1");
    return row ? decodeSealText(row.seal) : undefined;
  }

  /** Records a revocation if the seal is still `expected`. */
  revoke(
    revocation: RevocationRecord,
    expected: RevocationSeal | undefined,
    next: RevocationSeal,
  ): Promise<RevokeOutcome> {
    return this.#op(
      "cannot record the revocation (rolled back)",
      () =>
        this.#transaction((): RevokeOutcome => {
          const [taken] = this.#all(
            "SELECT 1 FROM revocations WHERE serial = ?",
            revocation.serial,
          );
          if (taken) return "exists";
          if (!sameSeal(this.#seal(), expected)) return "conflict";
          this.#run(
            "INSERT INTO revocations (serial, reason, revoked_at) VALUES (?, ?, ?)",
            revocation.serial,
            revocation.reason,
            revocation.revokedAt,
          );
          this.#run(
            "INSERT INTO revocation_seal (id, seal) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seal = excluded.seal",
            encodeSealText(next),
          );
          return "revoked";
        }),
    );
  }

  /** The revocation chain's seal. */
  revocationSeal(): Promise<RevocationSeal | undefined> {
    return this.#op("cannot read the revocation seal", () => this.#seal());
  }

  /** All revocations in recorded order. */
  revocations(): Promise<RevocationRecord[]> {
    return this.#op("cannot read revocations", () =>
      this.#all(
        "SELECT serial, reason, revoked_at FROM revocations ORDER BY seq",
      ).map(decodeRevocationRow));
  }

  /** Row counts. */
  counts(): Promise<StoreCounts> {
    return this.#op("cannot count rows", () => {
      const count = (table: string) =>
        Number(this.#all(`SELECT count(*) AS n FROM ${table}`)[0].n);
      return {
        certificates: count("certificates"),
        entries: count("log_entries"),
        treeHeads: count("tree_heads"),
        revocations: count("revocations"),
      };
    });
  }

  /**
   * What a database written by an earlier TrustChain (identity format 2: no MACs, no stored tree)
   * holds, for the CA to migrate it; `undefined` for a current database.
   *
   * @returns The legacy rows, in index (entries, certificates), size (heads) and revocation order.
   */
  #readLegacy(): Promise<LegacyCaData | undefined> {
    return this.#op("cannot read the earlier format", () => {
      if (!this.#legacy) return undefined;
      const entries = this.#all(
        "SELECT leaf_index, entry FROM log_entries ORDER BY leaf_index",
      );
      checkContiguous(entries.map((r) => r.leaf_index), 0);
      return {
        entries: entries.map((r) =>
          rowBytes(r.entry, "LOG_TAMPERED", "log entry")
        ),
        certificates: this.#all(
          "SELECT serial, leaf_index, not_after, sct FROM certificates ORDER BY leaf_index",
        ).map((r) => {
          const { mac: _, ...fields } = decodeCertificateRow({
            ...r,
            mac: new Uint8Array(0),
          });
          return fields;
        }),
        heads: this.#all(
          "SELECT tree_size, note FROM tree_heads ORDER BY tree_size",
        ).map(decodeHeadRow),
        revocations: this.#all(
          "SELECT serial, reason, revoked_at FROM revocations ORDER BY revoked_at, rowid",
        ).map(decodeRevocationRow),
      };
    });
  }

  /**
   * Turns a database written by an earlier TrustChain into the current format, in one
   * transaction: the rows' MACs, the stored tree, the revocation chain and the sealed identity.
   *
   * @param migration What the CA computed from the legacy rows.
   */
  #completeMigration(migration: LegacyMigration): Promise<void> {
    return this.#op("cannot migrate the earlier format (rolled back)", () => {
      if (!this.#legacy) {
        throw new StoqError(
          "STORE_ERROR",
          "This database is not of the earlier format",
        );
      }
      const db = this.#conn;
      this.#transaction(() => {
        db.exec(`
          ALTER TABLE log_entries ADD COLUMN mac BLOB NOT NULL DEFAULT x'';
          ALTER TABLE certificates ADD COLUMN mac BLOB NOT NULL DEFAULT x'';
          ALTER TABLE revocations RENAME TO legacy_revocations;
        `);
        db.exec(SCHEMA);
        migration.entryMacs.forEach((mac, i) =>
          this.#run(
            "UPDATE log_entries SET mac = ? WHERE leaf_index = ?",
            mac,
            i,
          )
        );
        for (const { serial, mac } of migration.certificateMacs) {
          this.#run(
            "UPDATE certificates SET mac = ? WHERE serial = ?",
            mac,
            serial,
          );
        }
        for (const r of migration.revocations) {
          this.#run(
            "INSERT INTO revocations (serial, reason, revoked_at) VALUES (?, ?, ?)",
            r.serial,
            r.reason,
            r.revokedAt,
          );
        }
        db.exec("DROP TABLE legacy_revocations");
        if (migration.seal) {
          this.#run(
            "INSERT INTO revocation_seal (id, seal) VALUES (1, ?)",
            encodeSealText(migration.seal),
          );
        }
        this.#writeTree(migration.state, migration.nodes);
        this.#run(
          "UPDATE log_sequence SET next_index = ? WHERE id = 1",
          migration.entryMacs.length,
        );
        this.#run(
          "UPDATE identity SET record = ? WHERE id = 1",
          migration.identity,
        );
      });
      this.#statements.clear();
      this.#legacy = false;
    });
  }

  /** Closes the database; idempotent. */
  close(): Promise<void> {
    this.#statements.clear();
    this.#db?.close();
    this.#db = undefined;
    return Promise.resolve();
  }
}
