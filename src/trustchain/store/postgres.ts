/**
 * A {@linkcode CaStore} in a PostgreSQL database (the `postgres` npm client), shared by several CA
 * processes: sequencing takes the sequence row's lock in the issuing transaction, integration the
 * tree state row's, so every process sees one log.
 *
 * @module
 */

import postgres from "npm:postgres@3.4.9";
import { StoqError } from "../../errors.ts";
import type { NodeId } from "../core/merkle.ts";
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
CREATE TABLE IF NOT EXISTS identity (id int PRIMARY KEY CHECK (id = 1), record text NOT NULL);
CREATE TABLE IF NOT EXISTS log_sequence (id int PRIMARY KEY CHECK (id = 1), next_index bigint NOT NULL);
INSERT INTO log_sequence (id, next_index) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS log_entries (
  leaf_index bigint PRIMARY KEY, entry bytea NOT NULL, mac bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
  serial text PRIMARY KEY,
  leaf_index bigint NOT NULL UNIQUE REFERENCES log_entries (leaf_index),
  not_after bigint NOT NULL,
  sct text NOT NULL,
  mac bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS tree_state (
  id int PRIMARY KEY CHECK (id = 1), size bigint NOT NULL, hashes bytea NOT NULL, mac bytea NOT NULL
);
INSERT INTO tree_state (id, size, hashes, mac) VALUES (1, 0, '', '') ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS tree_nodes (
  level int NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL, PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS tree_heads (tree_size bigint PRIMARY KEY, note text NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (
  seq bigint PRIMARY KEY,
  serial text NOT NULL UNIQUE REFERENCES certificates (serial),
  reason text NOT NULL,
  revoked_at bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS revocation_seal (id int PRIMARY KEY CHECK (id = 1), seal text);
INSERT INTO revocation_seal (id, seal) VALUES (1, NULL) ON CONFLICT DO NOTHING;
`;

// Serializes schema creation between processes that open a new database at once.
const SCHEMA_LOCK = 0x53544f51; // "STOQ"

type Row = Record<string, unknown>;
type Sql = postgres.Sql;

/** Options for {@linkcode PostgresCaStore.connect}. */
export interface PostgresCaStoreOptions {
  /**
   * Connections in this process's pool (concurrent issuances each use one while they sequence).
   * @default {4}
   */
  maxConnections?: number;
  /**
   * Seconds to wait for a connection before failing with `STORE_ERROR`.
   * @default {10}
   */
  connectTimeoutSeconds?: number;
}

/** The connection options of a `postgres://` URL, with `?host=/dir` for a Unix socket. */
function _connection(url: string): {
  options: postgres.Options<Record<string, postgres.PostgresType>>;
  redacted: string;
} {
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      "Cannot open the CA store as 'url' is not a URL: use postgres://user@host:port/database",
      { cause },
    );
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot open a PostgreSQL CA store from a ${u.protocol} URL: use postgres://…`,
    );
  }
  const query = Object.fromEntries(u.searchParams);
  const socketDir = query.host;
  delete query.host;
  const sslmode = query.sslmode;
  delete query.sslmode;
  const port = Number(query.port ?? (u.port || 5432));
  delete query.port;
  const hostname = u.hostname.replace(/^\[|\]$/g, "");
  const database = decodeURIComponent(u.pathname.slice(1));
  const user = decodeURIComponent(u.username);
  if (!socketDir && !hostname) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      "Cannot open the CA store as the URL names no host: add one, or ?host=/socket/dir",
    );
  }
  if (!database || !user) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      "Cannot open the CA store as the URL must name a user and a database: postgres://user@host/database",
    );
  }
  const redacted = new URL(url);
  if (redacted.password) redacted.password = "***";
  return {
    options: {
      ...(socketDir?.startsWith("/")
        ? { path: `${socketDir}/.s.PGSQL.${port}` }
        : { host: socketDir || hostname, port }),
      database,
      username: user,
      password: decodeURIComponent(u.password),
      ...(sslmode
        ? { ssl: sslmode as "require" | "prefer" | "verify-full" }
        : {}),
      // Other parameters (e.g. search_path=ca_1) go to the server at connect.
      connection: { application_name: "stoq-trustchain", ...query },
    },
    redacted: redacted.href,
  };
}

/**
 * A {@linkcode CaStore} in PostgreSQL, for several CA processes (nodes) sharing one CA. Leaf
 * indices come from the sequence row, locked in the issuing transaction; integration locks the
 * tree state row and runs the CA's pure integration function; every process signs tree heads over
 * committed states only. One CA per database (or per schema: `?search_path=name`).
 *
 * @example Opening a shared CA database (runs when STOQ_TEST_POSTGRES names a server, as in `make test`)
 * ```ts
 * import { CertificateAuthority, PostgresCaStore } from "../mod.ts";
 * const url = Deno.env.get("STOQ_TEST_POSTGRES"); // e.g. postgres://ca@db.internal:5432/ca1
 * if (url) {
 *   const store = await PostgresCaStore.connect(url);
 *   const ca = await CertificateAuthority.open({ name: "example-ca", store });
 *   console.log((await ca.provision("my-app")).names); // [ "my-app.stoq.local" ]
 *   await ca.close(); // closes the store too
 * }
 * ```
 */
export class PostgresCaStore implements CaStore {
  /** The URL, password redacted. */
  readonly url: string;
  #sql: Sql | undefined;
  #closing: Promise<void> | undefined;

  private constructor(sql: Sql, url: string) {
    this.#sql = sql;
    this.url = url;
  }

  /**
   * Connects and creates the tables if the database has none.
   *
   * @param url `postgres://user[:password]@host[:port]/database`, or with
   * `?host=/socket/dir` for a Unix socket; `sslmode` and server parameters (`search_path`) in the
   * query.
   * @param opts Pool size and connect timeout.
   * @returns The store.
   * @throws {StoqError} `INVALID_ARGUMENT` for a malformed URL; `STORE_ERROR` when the server
   * cannot be reached or refuses.
   */
  static async connect(
    url: string,
    opts: PostgresCaStoreOptions = {},
  ): Promise<PostgresCaStore> {
    const max = opts.maxConnections ?? 4;
    const timeout = opts.connectTimeoutSeconds ?? 10;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new RangeError(
        `Cannot open the CA store as 'maxConnections' must be a positive integer: current value is ${max}`,
      );
    }
    if (!(timeout > 0)) {
      throw new RangeError(
        `Cannot open the CA store as 'connectTimeoutSeconds' must be positive: current value is ${timeout}`,
      );
    }
    const { options, redacted } = _connection(url);
    const sql = postgres({
      ...options,
      max,
      connect_timeout: timeout,
      onnotice: () => {},
      fetch_types: false,
    });
    const store = new PostgresCaStore(sql, redacted);
    try {
      await sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK})`;
        await tx.unsafe(SCHEMA);
      });
    } catch (cause) {
      await sql.end({ timeout: 1 }).catch(() => {});
      throw new StoqError(
        "STORE_ERROR",
        `Cannot open the CA store at ${redacted}: is the PostgreSQL server running, and may this user create tables?`,
        { cause },
      );
    }
    return store;
  }

  get #db(): Sql {
    if (!this.#sql || this.#closing) {
      throw new StoqError(
        "CLOSED",
        "The CA store is closed: connect a new PostgresCaStore",
      );
    }
    return this.#sql;
  }

  // Runs one operation: database failures become STORE_ERROR; StoqErrors and argument errors pass.
  async #op<T>(what: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
    const sql = this.#db;
    try {
      return await fn(sql);
    } catch (cause) {
      if (
        cause instanceof StoqError || cause instanceof TypeError ||
        cause instanceof RangeError
      ) {
        throw cause;
      }
      throw new StoqError("STORE_ERROR", `CA store ${this.url}: ${what}`, {
        cause,
      });
    }
  }

  // A transaction; the callback's error rolls it back and is rethrown.
  #transaction<T>(sql: Sql, fn: (tx: Sql) => Promise<T>): Promise<T> {
    return sql.begin((tx) => fn(tx as unknown as Sql)) as Promise<T>;
  }

  /** The stored identity record, or `undefined` for a fresh store. */
  loadIdentity(): Promise<string | undefined> {
    return this.#op("cannot read the identity", async (sql) => {
      const [row] = await sql`SELECT record FROM identity WHERE id = 1`;
      return row ? rowText(row.record, "CA_TAMPERED", "identity") : undefined;
    });
  }

  /** Stores the identity record unless one is stored; returns the stored one. */
  saveIdentity(record: string): Promise<string> {
    return this.#op("cannot save the identity", async (sql) => {
      await sql`INSERT INTO identity (id, record) VALUES (1, ${record}) ON CONFLICT DO NOTHING`;
      const [row] = await sql`SELECT record FROM identity WHERE id = 1`;
      return rowText(row?.record, "CA_TAMPERED", "identity");
    });
  }

  /** Sequences issuances at the next indices, in one transaction holding the sequence row. */
  sequence(
    count: number,
    build: (first: number) => SequencedIssuance[],
  ): Promise<number> {
    return this.#op(
      "cannot record the issuance (rolled back)",
      (sql) =>
        this.#transaction(sql, async (tx) => {
          // Takes the sequence row's lock until commit: issuers queue here, briefly.
          const [row] = await tx`
            UPDATE log_sequence SET next_index = next_index + ${count} WHERE id = 1
            RETURNING next_index - ${count} AS first`;
          const first = rowInt(row?.first, "LOG_TAMPERED", "next index");
          const batch = build(first);
          if (batch.length !== count) {
            throw new RangeError(`Cannot sequence ${batch.length} of ${count}`);
          }
          if (batch.some((b, i) => b.certificate.leafIndex !== first + i)) {
            throw new RangeError("Cannot sequence a misnumbered record");
          }
          const entries = batch.map((b, i) => ({
            leaf_index: first + i,
            entry: b.entry.entry,
            mac: b.entry.mac,
          }));
          const certs = batch.map(({ certificate: c }) => ({
            serial: c.serial,
            leaf_index: c.leafIndex,
            not_after: c.notAfter,
            sct: encodeSctText(c.sct),
            mac: c.mac,
          }));
          await tx`
            WITH e AS (
              INSERT INTO log_entries ${
            tx(entries, "leaf_index", "entry", "mac")
          }
            )
            INSERT INTO certificates ${
            tx(certs, "serial", "leaf_index", "not_after", "sct", "mac")
          }`;
          return first;
        }),
    );
  }

  /** How many entries are sequenced. */
  sequencedSize(): Promise<number> {
    return this.#op("cannot read the sequence", async (sql) => {
      const [row] = await sql`SELECT next_index FROM log_sequence WHERE id = 1`;
      return rowInt(row?.next_index, "LOG_TAMPERED", "next index");
    });
  }

  static #state(row: Row | undefined): TreeState {
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
    return this.#op("cannot read the tree state", async (sql) => {
      const [row] =
        await sql`SELECT size, hashes, mac FROM tree_state WHERE id = 1`;
      return PostgresCaStore.#state(row);
    });
  }

  /** One integration step, in one transaction holding the tree state row. */
  integrate(
    limit: number,
    integrate: (state: TreeState, entries: LogEntryRecord[]) => Integration,
  ): Promise<TreeState> {
    return this.#op(
      "cannot integrate (rolled back)",
      (sql) =>
        this.#transaction(sql, async (tx) => {
          // The tree state row's lock serializes integration between processes. Its commit may
          // be asynchronous: a lost integration is redone from the sequenced entries (which
          // commit synchronously), with the same result.
          const [row] = await tx`
            SELECT size, hashes, mac, set_config('synchronous_commit', 'off', true)
            FROM tree_state WHERE id = 1 FOR UPDATE`;
          const before = PostgresCaStore.#state(row);
          const size = before.range.size;
          const rows = await tx`
            SELECT leaf_index, entry, mac FROM log_entries
            WHERE leaf_index >= ${size} ORDER BY leaf_index LIMIT ${limit}`;
          if (rows.length === 0) return before;
          checkContiguous(rows.map((r) => r.leaf_index), size);
          const { state, nodes } = integrate(
            before,
            rows.map((r) => ({
              entry: rowBytes(r.entry, "LOG_TAMPERED", "log entry"),
              mac: rowBytes(r.mac, "LOG_TAMPERED", "log entry MAC"),
            })),
          );
          const hashes = encodeHashes(state.range.hashes);
          if (nodes.length === 0) {
            await tx`UPDATE tree_state SET size = ${state.range.size}, hashes = ${hashes}, mac = ${state.mac} WHERE id = 1`;
          } else {
            const values = nodes.map((n) => ({
              level: n.level,
              idx: n.index,
              hash: n.hash,
            }));
            await tx`
              WITH n AS (INSERT INTO tree_nodes ${
              tx(values, "level", "idx", "hash")
            })
              UPDATE tree_state SET size = ${state.range.size}, hashes = ${hashes},
                mac = ${state.mac}
              WHERE id = 1`;
          }
          return state;
        }),
    );
  }

  /** Stored node hashes by id, in one query. */
  nodes(ids: readonly NodeId[]): Promise<(Uint8Array | undefined)[]> {
    return this.#op("cannot read tree nodes", async (sql) => {
      if (ids.length === 0) return [];
      // Integer arrays as literals: no array type lookup on connect (fetch_types is off).
      const levels = `{${ids.map((i) => i.level).join(",")}}`;
      const indices = `{${ids.map((i) => i.index).join(",")}}`;
      const rows = await sql`
        SELECT n.level, n.idx, n.hash
        FROM unnest(${levels}::int[], ${indices}::bigint[]) AS q(level, idx)
        JOIN tree_nodes n USING (level, idx)`;
      const found = new Map<string, Uint8Array>();
      for (const r of rows) {
        found.set(
          `${r.level}/${rowInt(r.idx, "LOG_TAMPERED", "node index")}`,
          decodeNodeHash(r.hash),
        );
      }
      return ids.map((i) => found.get(`${i.level}/${i.index}`));
    });
  }

  /** Stored node hashes at one level, indices `[start, end)`. */
  nodeRange(level: number, start: number, end: number): Promise<Uint8Array[]> {
    checkRange(start, end);
    return this.#op("cannot read tree nodes", async (sql) => {
      const rows = await sql`
        SELECT idx, hash FROM tree_nodes
        WHERE level = ${level} AND idx >= ${start} AND idx < ${end} ORDER BY idx`;
      checkContiguous(rows.map((r) => r.idx), start);
      return rows.map((r) => decodeNodeHash(r.hash));
    });
  }

  /** Stores a tree head unless one of that size is stored; returns the stored one. */
  addTreeHead(head: StoredTreeHead): Promise<StoredTreeHead> {
    return this.#op("cannot store the tree head", async (sql) => {
      const [inserted] = await sql`
        INSERT INTO tree_heads (tree_size, note) VALUES (${head.size}, ${head.note})
        ON CONFLICT DO NOTHING RETURNING tree_size, note`;
      // Another process stored one first: read it (a new statement sees its commit).
      const [row] = inserted ? [inserted] : await sql`
        SELECT tree_size, note FROM tree_heads WHERE tree_size = ${head.size}`;
      return decodeHeadRow(row ?? {});
    });
  }

  /** The stored tree head of the largest size. */
  latestTreeHead(): Promise<StoredTreeHead | undefined> {
    return this.#op("cannot read tree heads", async (sql) => {
      const [row] =
        await sql`SELECT tree_size, note FROM tree_heads ORDER BY tree_size DESC LIMIT 1`;
      return row ? decodeHeadRow(row) : undefined;
    });
  }

  /** Stored tree heads with sizes in `[min, max]`, smallest first. */
  treeHeads(min = 0, max = Number.MAX_SAFE_INTEGER): Promise<StoredTreeHead[]> {
    return this.#op("cannot read tree heads", async (sql) => {
      const rows = await sql`
        SELECT tree_size, note FROM tree_heads
        WHERE tree_size >= ${min} AND tree_size <= ${max} ORDER BY tree_size`;
      return rows.map(decodeHeadRow);
    });
  }

  /** Sequenced entries `[start, end)`. */
  entries(start: number, end: number): Promise<LogEntryRecord[]> {
    checkRange(start, end);
    return this.#op("cannot read log entries", async (sql) => {
      const rows = await sql`
        SELECT leaf_index, entry, mac FROM log_entries
        WHERE leaf_index >= ${start} AND leaf_index < ${end} ORDER BY leaf_index`;
      checkContiguous(rows.map((r) => r.leaf_index), start);
      return rows.map((r) => ({
        entry: rowBytes(r.entry, "LOG_TAMPERED", "log entry"),
        mac: rowBytes(r.mac, "LOG_TAMPERED", "log entry MAC"),
      }));
    });
  }

  /** Certificate records of entries `[start, end)`. */
  certificates(start: number, end: number): Promise<CertificateRecord[]> {
    checkRange(start, end);
    return this.#op("cannot read certificates", async (sql) => {
      const rows = await sql`
        SELECT * FROM certificates
        WHERE leaf_index >= ${start} AND leaf_index < ${end} ORDER BY leaf_index`;
      return rows.map(decodeCertificateRow);
    });
  }

  /** The certificate record for a serial. */
  certificate(serial: string): Promise<CertificateRecord | undefined> {
    return this.#op("cannot read a certificate", async (sql) => {
      const [row] =
        await sql`SELECT * FROM certificates WHERE serial = ${serial}`;
      return row ? decodeCertificateRow(row) : undefined;
    });
  }

  /** Records a revocation if the seal is still `expected`, holding the seal row. */
  revoke(
    revocation: RevocationRecord,
    expected: RevocationSeal | undefined,
    next: RevocationSeal,
  ): Promise<RevokeOutcome> {
    return this.#op(
      "cannot record the revocation (rolled back)",
      (sql) =>
        this.#transaction(sql, async (tx): Promise<RevokeOutcome> => {
          const [row] =
            await tx`SELECT seal FROM revocation_seal WHERE id = 1 FOR UPDATE`;
          const [taken] =
            await tx`SELECT 1 FROM revocations WHERE serial = ${revocation.serial}`;
          if (taken) return "exists";
          const current = row?.seal == null
            ? undefined
            : decodeSealText(row.seal);
          if (!sameSeal(current, expected)) return "conflict";
          await tx`
            INSERT INTO revocations (seq, serial, reason, revoked_at)
            VALUES (${
            expected?.count ?? 0
          }, ${revocation.serial}, ${revocation.reason},
                    ${revocation.revokedAt})`;
          await tx`UPDATE revocation_seal SET seal = ${
            encodeSealText(next)
          } WHERE id = 1`;
          return "revoked";
        }),
    );
  }

  /** The revocation chain's seal. */
  revocationSeal(): Promise<RevocationSeal | undefined> {
    return this.#op("cannot read the revocation seal", async (sql) => {
      const [row] = await sql`SELECT seal FROM revocation_seal WHERE id = 1`;
      return row?.seal == null ? undefined : decodeSealText(row.seal);
    });
  }

  /** All revocations in recorded order. */
  revocations(): Promise<RevocationRecord[]> {
    return this.#op("cannot read revocations", async (sql) => {
      const rows =
        await sql`SELECT serial, reason, revoked_at FROM revocations ORDER BY seq`;
      return rows.map(decodeRevocationRow);
    });
  }

  /** Row counts. */
  counts(): Promise<StoreCounts> {
    return this.#op("cannot count rows", async (sql) => {
      const [row] = await sql`SELECT
        (SELECT count(*) FROM certificates) AS certificates,
        (SELECT count(*) FROM log_entries) AS entries,
        (SELECT count(*) FROM tree_heads) AS heads,
        (SELECT count(*) FROM revocations) AS revocations`;
      return {
        certificates: Number(row.certificates),
        entries: Number(row.entries),
        treeHeads: Number(row.heads),
        revocations: Number(row.revocations),
      };
    });
  }

  /** Drains and closes the connection pool (queries in flight finish first); idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const sql = this.#sql;
      this.#sql = undefined;
      await sql?.end({ timeout: 5 });
    })();
    return this.#closing;
  }
}
