/**
 * A {@linkcode CaStore} in one SQLite database file per CA (`node:sqlite`, WAL mode, one
 * transaction per issuance).
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { StoqError } from "../../errors.ts";
import type {
  CaIdentityRecord,
  CaStore,
  CertificateRecord,
  RevocationRecord,
  StoreCounts,
} from "./store.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS identity (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log_entries (leaf_index INTEGER PRIMARY KEY, entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
  serial TEXT PRIMARY KEY,
  leaf_index INTEGER NOT NULL UNIQUE REFERENCES log_entries (leaf_index),
  not_after INTEGER NOT NULL,
  sct TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tree_heads (tree_size INTEGER PRIMARY KEY, note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (
  serial TEXT PRIMARY KEY REFERENCES certificates (serial),
  reason TEXT NOT NULL,
  revoked_at INTEGER NOT NULL
);
`;

type Row = Record<string, unknown>;

function _cert(row: Row): CertificateRecord {
  return {
    serial: row.serial as string,
    leafIndex: Number(row.leaf_index),
    notAfter: Number(row.not_after),
    sct: JSON.parse(row.sct as string),
  };
}

function _revocation(row: Row): RevocationRecord {
  return {
    serial: row.serial as string,
    reason: row.reason as string,
    revokedAt: Number(row.revoked_at),
  };
}

/**
 * A {@linkcode CaStore} in one SQLite database file (`node:sqlite`), in WAL mode. Each issuance is
 * one transaction, so a process killed mid-issuance leaves the previous consistent state.
 *
 * @example Opening a CA database
 * ```ts
 * import { SqliteCaStore } from "./sqlite.ts";
 * const dir = await Deno.makeTempDir();
 * const store = new SqliteCaStore(`${dir}/ca.db`);
 * console.log((await store.counts()).certificates); // 0
 * store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqliteCaStore implements CaStore {
  /** The database file path. */
  readonly path: string;
  #db: DatabaseSync | undefined;

  /**
   * Opens (creating if needed) the database.
   *
   * @param path The database file; one file per CA.
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
      this.#db.exec("PRAGMA busy_timeout=5000;");
      this.#db.exec(SCHEMA);
    } catch (cause) {
      this.#db?.close();
      this.#db = undefined;
      throw new StoqError(
        "STORE_ERROR",
        `Cannot open CA database ${path}: is it a SQLite file?`,
        {
          cause,
        },
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

  // Prepared statements, kept for the life of the connection (issuance runs the same few).
  #statements = new Map<string, StatementSync>();

  #prepare(sql: string): StatementSync {
    const conn = this.#conn;
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = conn.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  #all(sql: string, ...params: (string | number)[]): Row[] {
    try {
      return this.#prepare(sql).all(...params) as Row[];
    } catch (cause) {
      if (cause instanceof StoqError) throw cause;
      throw new StoqError("STORE_ERROR", `CA database query failed: ${sql}`, {
        cause,
      });
    }
  }

  /** The stored identity, or `undefined` for a fresh store. */
  loadIdentity(): Promise<CaIdentityRecord | undefined> {
    const [row] = this.#all("SELECT record FROM identity WHERE id = 1");
    return Promise.resolve(row ? JSON.parse(row.record as string) : undefined);
  }

  /** Stores the identity of a new CA (once). */
  saveIdentity(identity: CaIdentityRecord): Promise<void> {
    try {
      this.#conn.prepare("INSERT INTO identity (id, record) VALUES (1, ?)").run(
        JSON.stringify(identity),
      );
    } catch (cause) {
      throw new StoqError(
        "STORE_ERROR",
        "Cannot save CA identity: does this database hold a CA?",
        {
          cause,
        },
      );
    }
    return Promise.resolve();
  }

  /** Log entries in index order: all, or those in `[start, end)`. */
  entries(start = 0, end = Number.MAX_SAFE_INTEGER): Promise<Uint8Array[]> {
    const rows = this.#all(
      "SELECT leaf_index, entry FROM log_entries WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
      start,
      end,
    );
    return Promise.resolve(rows.map((r, i) => {
      // A gap in the indices is history rewritten under us.
      if (Number(r.leaf_index) !== start + i) {
        throw new StoqError(
          "LOG_TAMPERED",
          `Log entry ${start + i} is missing from ${this.path}`,
        );
      }
      return new Uint8Array(r.entry as Uint8Array);
    }));
  }

  /** All signed tree heads, oldest first. */
  treeHeads(): Promise<string[]> {
    return Promise.resolve(
      this.#all("SELECT note FROM tree_heads ORDER BY tree_size").map((r) =>
        r.note as string
      ),
    );
  }

  /** All certificate records. */
  certificates(): Promise<CertificateRecord[]> {
    return Promise.resolve(
      this.#all("SELECT * FROM certificates ORDER BY leaf_index").map(_cert),
    );
  }

  /** The certificate record for a serial, if issued. */
  certificate(serial: string): Promise<CertificateRecord | undefined> {
    const [row] = this.#all(
      "SELECT * FROM certificates WHERE serial = ?",
      serial,
    );
    return Promise.resolve(row ? _cert(row) : undefined);
  }

  /** Atomically records a certificate, its log entry and the new tree head. */
  commitIssuance(
    record: CertificateRecord,
    entry: Uint8Array,
    treeHead: string,
  ): Promise<void> {
    const db = this.#conn;
    try {
      db.exec("BEGIN IMMEDIATE");
      try {
        this.#prepare(
          "INSERT INTO log_entries (leaf_index, entry) VALUES (?, ?)",
        )
          .run(
            record.leafIndex,
            entry,
          );
        this.#prepare(
          "INSERT INTO certificates (serial, leaf_index, not_after, sct) VALUES (?, ?, ?, ?)",
        ).run(
          record.serial,
          record.leafIndex,
          record.notAfter,
          JSON.stringify(record.sct),
        );
        this.#prepare("INSERT INTO tree_heads (tree_size, note) VALUES (?, ?)")
          .run(
            record.leafIndex + 1,
            treeHead,
          );
        db.exec("COMMIT");
      } catch (err) {
        db.exec("ROLLBACK");
        throw err;
      }
    } catch (cause) {
      return Promise.reject(
        new StoqError(
          "STORE_ERROR",
          "Cannot record issuance: the transaction was rolled back",
          {
            cause,
          },
        ),
      );
    }
    return Promise.resolve();
  }

  /** Records a revocation (the first one wins). */
  revoke(revocation: RevocationRecord): Promise<void> {
    this.#all(
      "INSERT OR IGNORE INTO revocations (serial, reason, revoked_at) VALUES (?, ?, ?)",
      revocation.serial,
      revocation.reason,
      revocation.revokedAt,
    );
    return Promise.resolve();
  }

  /** The revocation of a serial, if any. */
  revocation(serial: string): Promise<RevocationRecord | undefined> {
    const [row] = this.#all(
      "SELECT * FROM revocations WHERE serial = ?",
      serial,
    );
    return Promise.resolve(row ? _revocation(row) : undefined);
  }

  /** All revocations. */
  revocations(): Promise<RevocationRecord[]> {
    return Promise.resolve(
      this.#all("SELECT * FROM revocations ORDER BY revoked_at").map(
        _revocation,
      ),
    );
  }

  /** Row counts. */
  counts(): Promise<StoreCounts> {
    const count = (table: string) =>
      Number(this.#all(`SELECT count(*) AS n FROM ${table}`)[0].n);
    return Promise.resolve({
      certificates: count("certificates"),
      entries: count("log_entries"),
      treeHeads: count("tree_heads"),
      revocations: count("revocations"),
    });
  }

  /** Closes the database; idempotent. */
  close(): void {
    this.#statements.clear();
    this.#db?.close();
    this.#db = undefined;
  }
}
