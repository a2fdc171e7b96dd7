/**
 * A {@linkcode CaStore} in memory, for tests and examples.
 *
 * @module
 */

import { StoqError } from "../../errors.ts";
import type { NodeId } from "../core/merkle.ts";
import { checkRange, sameSeal } from "./records.ts";
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

const _copy = (b: Uint8Array) => b.slice();

/**
 * A {@linkcode CaStore} in memory, for tests and examples. Lost when the process exits; each
 * operation is atomic (it runs to completion before another starts).
 *
 * @example Fresh store
 * ```ts
 * import { MemoryCaStore } from "./memory.ts";
 * const store = new MemoryCaStore();
 * console.log(await store.loadIdentity()); // undefined
 * await store.close();
 * ```
 */
export class MemoryCaStore implements CaStore {
  #identity?: string;
  #entries: LogEntryRecord[] = [];
  #state: TreeState = { range: { size: 0, hashes: [] }, mac: new Uint8Array() };
  #nodes = new Map<string, Uint8Array>();
  #heads = new Map<number, string>();
  #certs = new Map<string, CertificateRecord>();
  #revocations: RevocationRecord[] = [];
  #seal?: RevocationSeal;
  #closed = false;

  // Runs one operation to completion, as a promise (rejected on any error).
  #run<T>(fn: () => T): Promise<T> {
    try {
      if (this.#closed) {
        throw new StoqError("CLOSED", "The CA store is closed: open a new one");
      }
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The stored identity record, or `undefined` for a fresh store. */
  loadIdentity(): Promise<string | undefined> {
    return this.#run(() => this.#identity);
  }

  /** Stores the identity record unless one is stored; returns the stored one. */
  saveIdentity(record: string): Promise<string> {
    return this.#run(() => (this.#identity ??= record));
  }

  /** Sequences issuances at the next indices. */
  sequence(
    count: number,
    build: (first: number) => SequencedIssuance[],
  ): Promise<number> {
    return this.#run(() => {
      const first = this.#entries.length;
      const batch = build(first);
      const serials = new Set(batch.map((b) => b.certificate.serial));
      if (
        batch.length !== count || serials.size !== count ||
        batch.some((b, i) =>
          this.#certs.has(b.certificate.serial) ||
          b.certificate.leafIndex !== first + i
        )
      ) {
        throw new StoqError(
          "STORE_ERROR",
          "Cannot sequence: a serial is taken or a record is misnumbered",
        );
      }
      for (const { entry, certificate } of batch) {
        this.#entries.push({
          entry: _copy(entry.entry),
          mac: _copy(entry.mac),
        });
        this.#certs.set(certificate.serial, { ...certificate });
      }
      return first;
    });
  }

  /** How many entries are sequenced. */
  sequencedSize(): Promise<number> {
    return this.#run(() => this.#entries.length);
  }

  /** The committed tree state. */
  treeState(): Promise<TreeState> {
    return this.#run(() => this.#state);
  }

  /** One integration step. */
  integrate(
    limit: number,
    integrate: (state: TreeState, entries: LogEntryRecord[]) => Integration,
  ): Promise<TreeState> {
    return this.#run(() => {
      const size = this.#state.range.size;
      const pending = this.#entries.slice(size, size + limit);
      if (pending.length === 0) return this.#state;
      const { state, nodes } = integrate(this.#state, pending);
      for (const n of nodes) {
        this.#nodes.set(`${n.level}/${n.index}`, _copy(n.hash));
      }
      this.#state = state;
      return state;
    });
  }

  /** Stored node hashes by id. */
  nodes(ids: readonly NodeId[]): Promise<(Uint8Array | undefined)[]> {
    return this.#run(() =>
      ids.map((id) => this.#nodes.get(`${id.level}/${id.index}`)?.slice())
    );
  }

  /** Stored node hashes at one level. */
  nodeRange(level: number, start: number, end: number): Promise<Uint8Array[]> {
    return this.#run(() => {
      checkRange(start, end);
      const out: Uint8Array[] = [];
      for (let i = start; i < end; i++) {
        const h = this.#nodes.get(`${level}/${i}`);
        if (!h) break;
        out.push(h.slice());
      }
      return out;
    });
  }

  /** Stores a tree head unless one of that size is stored. */
  addTreeHead(head: StoredTreeHead): Promise<StoredTreeHead> {
    return this.#run(() => {
      if (!this.#heads.has(head.size)) this.#heads.set(head.size, head.note);
      return { size: head.size, note: this.#heads.get(head.size)! };
    });
  }

  /** The latest tree head. */
  latestTreeHead(): Promise<StoredTreeHead | undefined> {
    return this.#run(() => {
      const size = Math.max(-1, ...this.#heads.keys());
      return size < 0 ? undefined : { size, note: this.#heads.get(size)! };
    });
  }

  /** Tree heads with sizes in `[min, max]`. */
  treeHeads(min = 0, max = Number.MAX_SAFE_INTEGER): Promise<StoredTreeHead[]> {
    return this.#run(() =>
      [...this.#heads].filter(([size]) => size >= min && size <= max)
        .sort(([a], [b]) => a - b).map(([size, note]) => ({ size, note }))
    );
  }

  /** Sequenced entries `[start, end)`. */
  entries(start: number, end: number): Promise<LogEntryRecord[]> {
    return this.#run(() => {
      checkRange(start, end);
      return this.#entries.slice(start, end).map((r) => ({
        entry: _copy(r.entry),
        mac: _copy(r.mac),
      }));
    });
  }

  /** Certificate records of entries `[start, end)`. */
  certificates(start: number, end: number): Promise<CertificateRecord[]> {
    return this.#run(() => {
      checkRange(start, end);
      return [...this.#certs.values()].filter((c) =>
        c.leafIndex >= start && c.leafIndex < end
      ).sort((a, b) => a.leafIndex - b.leafIndex).map((c) => ({ ...c }));
    });
  }

  /** The certificate record for a serial. */
  certificate(serial: string): Promise<CertificateRecord | undefined> {
    return this.#run(() => {
      const c = this.#certs.get(serial);
      return c && { ...c };
    });
  }

  /** Records a revocation if the seal is still `expected`. */
  revoke(
    revocation: RevocationRecord,
    expected: RevocationSeal | undefined,
    next: RevocationSeal,
  ): Promise<RevokeOutcome> {
    return this.#run(() => {
      if (this.#revocations.some((r) => r.serial === revocation.serial)) {
        return "exists";
      }
      if (!sameSeal(this.#seal, expected)) return "conflict";
      this.#revocations.push({ ...revocation });
      this.#seal = { ...next };
      return "revoked";
    });
  }

  /** The revocation chain's seal. */
  revocationSeal(): Promise<RevocationSeal | undefined> {
    return this.#run(() => this.#seal && { ...this.#seal });
  }

  /** All revocations in recorded order. */
  revocations(): Promise<RevocationRecord[]> {
    return this.#run(() => this.#revocations.map((r) => ({ ...r })));
  }

  /** Row counts. */
  counts(): Promise<StoreCounts> {
    return this.#run(() => ({
      certificates: this.#certs.size,
      entries: this.#entries.length,
      treeHeads: this.#heads.size,
      revocations: this.#revocations.length,
    }));
  }

  /** Releases the store; idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}
