/**
 * A {@linkcode CaStore} in memory, for tests and examples.
 *
 * @module
 */

import { StoqError } from "../../errors.ts";
import type {
  CaIdentityRecord,
  CaStore,
  CertificateRecord,
  RevocationRecord,
  StoreCounts,
} from "./store.ts";

/**
 * A {@linkcode CaStore} in memory, for tests and examples. Lost when the process exits.
 *
 * @example Fresh store
 * ```ts
 * import { MemoryCaStore } from "./memory.ts";
 * console.log(await new MemoryCaStore().loadIdentity()); // undefined
 * ```
 */
export class MemoryCaStore implements CaStore {
  #identity?: CaIdentityRecord;
  #entries: Uint8Array[] = [];
  #heads: string[] = [];
  #certs = new Map<string, CertificateRecord>();
  #revocations = new Map<string, RevocationRecord>();

  /** The stored identity, or `undefined` for a fresh store. */
  loadIdentity(): Promise<CaIdentityRecord | undefined> {
    return Promise.resolve(this.#identity && { ...this.#identity });
  }
  /** Stores the identity of a new CA (once). */
  saveIdentity(identity: CaIdentityRecord): Promise<void> {
    if (this.#identity) {
      throw new StoqError("STORE_ERROR", "This store already holds a CA");
    }
    this.#identity = { ...identity };
    return Promise.resolve();
  }
  /** Log entries in index order: all, or those in `[start, end)`. */
  entries(
    start = 0,
    end: number = this.#entries.length,
  ): Promise<Uint8Array[]> {
    return Promise.resolve(
      this.#entries.slice(start, end).map((e) => e.slice()),
    );
  }
  /** All signed tree heads, oldest first. */
  treeHeads(): Promise<string[]> {
    return Promise.resolve([...this.#heads]);
  }
  /** All certificate records. */
  certificates(): Promise<CertificateRecord[]> {
    return Promise.resolve([...this.#certs.values()]);
  }
  /** The certificate record for a serial, if issued. */
  certificate(serial: string): Promise<CertificateRecord | undefined> {
    return Promise.resolve(this.#certs.get(serial));
  }
  /** Atomically records a certificate, its log entry and the new tree head. */
  commitIssuance(
    record: CertificateRecord,
    entry: Uint8Array,
    treeHead: string,
  ): Promise<void> {
    if (
      this.#certs.has(record.serial) ||
      record.leafIndex !== this.#entries.length
    ) {
      return Promise.reject(
        new StoqError("STORE_ERROR", "Duplicate serial or out-of-order entry"),
      );
    }
    this.#certs.set(record.serial, record);
    this.#entries.push(entry.slice());
    this.#heads.push(treeHead);
    return Promise.resolve();
  }
  /** Records a revocation (the first one wins). */
  revoke(revocation: RevocationRecord): Promise<void> {
    if (!this.#revocations.has(revocation.serial)) {
      this.#revocations.set(revocation.serial, revocation);
    }
    return Promise.resolve();
  }
  /** The revocation of a serial, if any. */
  revocation(serial: string): Promise<RevocationRecord | undefined> {
    return Promise.resolve(this.#revocations.get(serial));
  }
  /** All revocations. */
  revocations(): Promise<RevocationRecord[]> {
    return Promise.resolve([...this.#revocations.values()]);
  }
  /** Row counts. */
  counts(): Promise<StoreCounts> {
    return Promise.resolve({
      certificates: this.#certs.size,
      entries: this.#entries.length,
      treeHeads: this.#heads.length,
      revocations: this.#revocations.size,
    });
  }
  /** Releases the store; idempotent. */
  close(): void {}
}
