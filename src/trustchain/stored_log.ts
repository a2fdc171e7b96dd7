/**
 * The CA's transparency log as its {@linkcode CaStore} holds it: entries sequenced by the store,
 * integrated into the tree by a pure function under the store's lock, tree heads signed over
 * committed states only, proofs and tiles read from stored node hashes. Opening it reads the
 * committed state and the latest tree head, O(log n) rows, whatever the log's size.
 *
 * @module
 */

import { StoqError } from "../errors.ts";
import {
  checkEntryMac,
  checkStateMac,
  integrateVerified,
  logTampered,
} from "./core/audit.ts";
import {
  type Checkpoint,
  type NoteVerifier,
  openNote,
  parseCheckpoint,
} from "./core/checkpoint.ts";
import type { LogSigner, TransparencyProof } from "./core/ct_log.ts";
import {
  appendLeaves,
  compactRangeIds,
  compactRangeRoot,
  consistencyProofFromNodes,
  inclusionProofFromNodes,
  leafHash,
  type NodeId,
  type NodeReader,
  rootFromNodes,
  verifyInclusion,
} from "./core/merkle.ts";
import {
  merkleTreeLeaf,
  parseTileLeaf,
  type Sct,
  type TileLeaf,
} from "./core/rfc6962.ts";
import type {
  CaStore,
  LogEntryRecord,
  StoredTreeHead,
  TreeState,
} from "./store/store.ts";
import { equalBytes, toBase64 } from "./core/_bytes.ts";

/** How many sequenced entries one integration transaction takes at most. */
const INTEGRATION_BATCH = 1024;

/** A verified tree head: its size, root and note. */
interface Head {
  size: number;
  root: Uint8Array;
  note: string;
}

/** What {@linkcode StoredLog.audit} checked. */
export interface LogAudit {
  /** Entries whose MAC, Merkle leaf and place were checked. */
  entries: number;
  /** Tree heads whose signature and root were checked. */
  treeHeads: number;
  /** Stored node hashes compared with the recomputed tree. */
  nodes: number;
}

/**
 * The CA's transparency log, read from its store (what `ca.log` returns). Sizes, roots and proofs
 * are of committed trees only.
 *
 * @example Proofs from stored node hashes
 * ```ts
 * import { CertificateAuthority, MemoryCaStore, verifyConsistency } from "./mod.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * for (const app of ["a", "b", "c"]) await ca.provision(app);
 * const proof = await ca.log.consistencyProof(1, 3);
 * console.log(verifyConsistency(1, 3, await ca.log.root(1), await ca.log.root(3), proof)); // true
 * await ca.close();
 * ```
 */
export class StoredLog {
  /** The log origin (first checkpoint line and note key name). */
  readonly origin: string;
  /** Base64 log ID: SHA-256 of the log key's DER SubjectPublicKeyInfo. */
  readonly logId: string;
  /** Verifiers for this log's RFC 6962 and Falcon note keys. */
  readonly verifiers: readonly NoteVerifier[];
  readonly #store: CaStore;
  readonly #signer: LogSigner;
  readonly #macKey: Uint8Array;
  #head: Head | undefined;
  #publishing: Promise<Head | undefined> | undefined;
  readonly #read: NodeReader;

  private constructor(store: CaStore, signer: LogSigner, macKey: Uint8Array) {
    this.#store = store;
    this.#signer = signer;
    this.#macKey = macKey;
    this.origin = signer.origin;
    this.logId = signer.logId;
    this.verifiers = signer.verifiers;
    this.#read = async (ids) => {
      const hashes = await store.nodes(ids);
      return ids.map((id, i) => {
        const h = hashes[i];
        if (!h) {
          throw logTampered(`tree node ${id.level}/${id.index} is missing`);
        }
        return h;
      });
    };
  }

  /**
   * Opens the log: checks the committed tree state (its MAC, and its compact range against the
   * stored nodes) and the latest tree head (its signature, and its root against the tree),
   * integrates entries sequenced but not yet integrated (a process stopped between the two), signs
   * a head for a committed state that has none, and checks `trustedCheckpoint`.
   *
   * @param store The CA's store.
   * @param signer The log's signer.
   * @param macKey The key of the CA's row MACs.
   * @param trustedCheckpoint A checkpoint this log published earlier.
   * @returns The log.
   * @throws {StoqError} `LOG_TAMPERED` naming what does not hold.
   */
  static async open(
    store: CaStore,
    signer: LogSigner,
    macKey: Uint8Array,
    trustedCheckpoint?: string,
  ): Promise<StoredLog> {
    const log = new StoredLog(store, signer, macKey);
    const state = await store.treeState();
    await log.#checkState(state);
    const stored = await store.latestTreeHead();
    if (stored) {
      const head = await log.#verifyHead(stored.note, "the latest tree head");
      if (head.size !== stored.size || head.size > state.range.size) {
        throw logTampered(
          `the latest tree head (size ${head.size}) is not of the committed tree (size ${state.range.size})`,
        );
      }
      const root = head.size === state.range.size
        ? compactRangeRoot(state.range)
        : await log.#rootFromNodes(head.size);
      if (!equalBytes(root, head.root)) {
        throw logTampered(
          `the latest tree head's root does not match the tree of size ${head.size}`,
        );
      }
      log.#head = head;
    }
    const sequenced = await store.sequencedSize();
    if (sequenced < state.range.size) {
      throw logTampered(
        `${sequenced} entries are sequenced but the tree holds ${state.range.size}`,
      );
    }
    if (
      sequenced > state.range.size ||
      (log.#head?.size ?? 0) < state.range.size
    ) {
      await log.sync();
      if (log.size < sequenced) {
        throw logTampered(
          `${sequenced} entries are sequenced but entry ${log.size} is missing`,
        );
      }
    }
    if (trustedCheckpoint !== undefined) {
      await log.#checkTrusted(trustedCheckpoint);
    }
    return log;
  }

  /** Checks a committed state's MAC and that its compact range is what the stored nodes hold. */
  async #checkState(state: TreeState): Promise<void> {
    checkStateMac(this.#macKey, state);
    const ids = compactRangeIds(state.range.size);
    const stored = await this.#store.nodes(ids);
    ids.forEach((id, i) => {
      const h = stored[i];
      if (!h || !equalBytes(h, state.range.hashes[i])) {
        throw logTampered(
          `stored tree node ${id.level}/${id.index} differs from the committed tree state`,
        );
      }
    });
  }

  async #verifyHead(note: string, what: string): Promise<Head> {
    let cp: Checkpoint;
    try {
      cp = parseCheckpoint((await openNote(note, this.verifiers)).body);
    } catch (cause) {
      throw logTampered(`${what} does not verify with the log key`, cause);
    }
    if (cp.origin !== this.origin) {
      throw logTampered(`${what} is of log ${cp.origin}`);
    }
    return { size: cp.treeSize, root: cp.rootHash, note };
  }

  async #checkTrusted(checkpoint: string): Promise<void> {
    let head: Head;
    try {
      head = await this.#verifyHead(checkpoint, "the trusted checkpoint");
    } catch (cause) {
      throw new StoqError(
        "LOG_TAMPERED",
        "The trusted checkpoint is not signed by this CA's log",
        { cause },
      );
    }
    if (
      head.size > this.size ||
      !equalBytes(await this.root(head.size), head.root)
    ) {
      throw new StoqError(
        "LOG_TAMPERED",
        `The log no longer contains the trusted checkpoint of size ${head.size}: restore it from a backup`,
      );
    }
  }

  /** The size of the latest committed tree head this process knows (entries that may be served). */
  get size(): number {
    return this.#head?.size ?? 0;
  }

  /** The latest signed tree head (checkpoint note, RFC 6962 signature only), if any. */
  get treeHead(): string | undefined {
    return this.#head?.note;
  }

  /** The log key's DER SubjectPublicKeyInfo. */
  get publicKey(): Uint8Array {
    return this.#signer.publicKey;
  }

  /**
   * The C2SP vkey strings of the log key (type `0x05`, RFC 6962 tree heads) and of the Falcon
   * co-signing key (type `0xff`).
   */
  get vkeys(): { log: string; falcon: string } {
    return this.#signer.vkeys;
  }

  /**
   * Integrates every entry sequenced so far (by any process) and makes sure a tree head is signed
   * over the resulting committed state.
   *
   * @returns The latest tree head's size.
   */
  async sync(): Promise<number> {
    await this.#publish();
    return this.size;
  }

  /**
   * Waits until a committed tree head covers entry `index` (integrating and signing as needed;
   * concurrent callers share the work).
   *
   * @param index A sequenced entry's index.
   * @returns The head's note and size.
   */
  async headCovering(index: number): Promise<StoredTreeHead> {
    // A pass that was under way when the entry was sequenced may end short of it; the next one
    // started after, so it integrates the entry, unless the store lost it.
    for (let pass = 0; !this.#head || this.#head.size <= index; pass++) {
      if (pass === 2) {
        throw logTampered(`sequenced entry ${index} is missing from the store`);
      }
      await this.#publish();
    }
    return { size: this.#head.size, note: this.#head.note };
  }

  // One shared integrate-then-sign pass at a time per process; the store serializes processes.
  #publish(): Promise<Head | undefined> {
    this.#publishing ??= this.#integrateAndSign().finally(() => {
      this.#publishing = undefined;
    });
    return this.#publishing;
  }

  async #integrateAndSign(): Promise<Head | undefined> {
    let state: TreeState;
    let known = this.#head?.size ?? 0;
    while (true) {
      state = await this.#store.integrate(
        INTEGRATION_BATCH,
        (committed, entries) =>
          integrateVerified(this.#macKey, committed, entries),
      );
      // A full batch may have left more behind.
      const grew = state.range.size - known;
      known = state.range.size;
      if (grew < INTEGRATION_BATCH) break;
    }
    checkStateMac(this.#macKey, state);
    if (state.range.size > (this.#head?.size ?? 0)) {
      // The state is committed: sign over it, and keep the head stored for its size.
      const root = compactRangeRoot(state.range);
      const note = await this.#signer.signTreeHead(state.range.size, root);
      const stored = await this.#store.addTreeHead({
        size: state.range.size,
        note,
      });
      const head = stored.note === note
        ? { size: state.range.size, root, note }
        : await this.#verifyHead(stored.note, "a stored tree head");
      if (head.size !== state.range.size || !equalBytes(head.root, root)) {
        throw logTampered(
          `the stored tree head of size ${state.range.size} is not of the committed tree`,
        );
      }
      if (head.size > (this.#head?.size ?? 0)) this.#head = head;
    }
    return this.#head;
  }

  /**
   * The root hash of the first `size` entries of the committed tree.
   *
   * @param size At most {@linkcode StoredLog.size}; defaults to it.
   * @returns The root hash.
   */
  root(size: number = this.size): Promise<Uint8Array> {
    this.#checkSize("size", size, this.size);
    if (this.#head && size === this.#head.size) {
      return Promise.resolve(this.#head.root.slice());
    }
    return this.#rootFromNodes(size);
  }

  #rootFromNodes(size: number): Promise<Uint8Array> {
    return rootFromNodes(this.#read, size);
  }

  /**
   * The hash of the complete subtree of `2^level` entries starting at `index * 2^level`.
   *
   * @param level The subtree height.
   * @param index Which subtree.
   * @returns The hash.
   * @throws {RangeError} When the subtree is not complete in the committed tree.
   */
  async subtreeHash(level: number, index: number): Promise<Uint8Array> {
    const [hash] = await this.hashTile(level, index, 1);
    return hash;
  }

  /**
   * `width` consecutive complete-subtree hashes at one level (a tlog tile's contents).
   *
   * @param level The subtree height.
   * @param start The first subtree's index.
   * @param width How many.
   * @returns The hashes.
   * @throws {RangeError} When a subtree is not complete in the committed tree.
   */
  async hashTile(
    level: number,
    start: number,
    width: number,
  ): Promise<Uint8Array[]> {
    this.#checkSize("level", level, 52);
    const complete = Math.floor(this.size / 2 ** level);
    this.#checkSize("start", start, complete);
    this.#checkSize("width", width, complete - start);
    const hashes = await this.#store.nodeRange(level, start, start + width);
    if (hashes.length !== width) {
      throw logTampered(`tree nodes at level ${level} are missing`);
    }
    return hashes;
  }

  /**
   * RFC 9162 inclusion proof of entry `index` in the committed tree of `size` entries, from stored
   * node hashes.
   *
   * @param index The entry index.
   * @param size The tree size; defaults to {@linkcode StoredLog.size}.
   * @returns The audit path.
   */
  inclusionProof(
    index: number,
    size: number = this.size,
  ): Promise<Uint8Array[]> {
    this.#checkSize("size", size, this.size);
    this.#checkSize("index", index, size - 1);
    return inclusionProofFromNodes(this.#read, index, size);
  }

  /**
   * RFC 9162 consistency proof between two committed tree sizes, from stored node hashes.
   *
   * @param first The older size.
   * @param second The newer size; defaults to {@linkcode StoredLog.size}.
   * @returns The proof nodes.
   */
  consistencyProof(
    first: number,
    second: number = this.size,
  ): Promise<Uint8Array[]> {
    this.#checkSize("second", second, this.size);
    this.#checkSize("first", first, second);
    return consistencyProofFromNodes(this.#read, first, second);
  }

  /**
   * The proof bundle of entry `leafIndex` against a tree head of this log, after checking the
   * entry's MAC and that the path leads from the entry to the head's root.
   *
   * @param leafIndex The entry index.
   * @param treeHead A tree head this log signed, larger than `leafIndex`.
   * @param sct The entry's SCT.
   * @returns The proof.
   * @throws {StoqError} `LOG_TAMPERED` when the stored entry or nodes do not verify.
   */
  async proof(
    leafIndex: number,
    treeHead: StoredTreeHead,
    sct: Sct,
  ): Promise<TransparencyProof> {
    const [[record], path] = await Promise.all([
      this.#store.entries(leafIndex, leafIndex + 1),
      this.inclusionProof(leafIndex, treeHead.size),
    ]);
    if (!record) throw logTampered(`log entry ${leafIndex} is missing`);
    const leaf = this.#leaf(leafIndex, record);
    const root = this.#head && this.#head.size === treeHead.size
      ? this.#head.root
      : parseCheckpoint(
        treeHead.note.slice(0, treeHead.note.indexOf("\n\n") + 1),
      )
        .rootHash;
    if (
      !verifyInclusion(
        leafHash(merkleTreeLeaf(leaf.timestampedEntry)),
        leafIndex,
        treeHead.size,
        path,
        root,
      )
    ) {
      throw logTampered(
        `the stored tree does not prove entry ${leafIndex} in the tree of size ${treeHead.size}`,
      );
    }
    return {
      leafIndex,
      inclusionPath: path.map(toBase64),
      treeHead: treeHead.note,
      sct,
    };
  }

  /** A stored entry, after its MAC check. */
  #leaf(index: number, record: LogEntryRecord): TileLeaf {
    checkEntryMac(this.#macKey, index, record);
    try {
      return parseTileLeaf(record.entry);
    } catch (cause) {
      throw logTampered(`log entry ${index} is malformed`, cause);
    }
  }

  /**
   * Entries (static-ct-api `TileLeaf`s) of the committed tree, each checked against its MAC.
   *
   * @param start The first index.
   * @param end One past the last (at most {@linkcode StoredLog.size}).
   * @returns The entries.
   */
  async entries(start: number, end: number): Promise<Uint8Array[]> {
    this.#checkSize("end", end, this.size);
    this.#checkSize("start", start, end);
    const records = await this.#store.entries(start, end);
    if (records.length !== end - start) {
      throw logTampered(`log entries in [${start}, ${end}) are missing`);
    }
    return records.map((r, i) => {
      checkEntryMac(this.#macKey, start + i, r);
      return r.entry;
    });
  }

  /**
   * A checkpoint over the latest committed tree (integrating what other processes sequenced),
   * co-signed with Falcon-512.
   *
   * @returns The checkpoint note.
   */
  async checkpoint(): Promise<string> {
    await this.sync();
    const head = this.#head;
    return await this.#signer.checkpoint(
      head?.size ?? 0,
      head?.root ?? compactRangeRoot({ size: 0, hashes: [] }),
    );
  }

  /**
   * Recomputes the whole tree from the stored entries and checks everything against it: every
   * entry's MAC and place, every stored node hash, every stored tree head's signature and root,
   * and the committed state. O(n): for audits, not for start-up.
   *
   * @param onEntries Called with each batch of checked entries (e.g. to check certificates).
   * @returns What was checked.
   * @throws {StoqError} `LOG_TAMPERED` naming the first thing that fails.
   */
  async audit(
    onEntries?: (start: number, entries: Uint8Array[]) => Promise<void>,
  ): Promise<LogAudit> {
    const state = await this.#store.treeState();
    await this.#checkState(state);
    const size = state.range.size;
    const heads = await this.#store.treeHeads(0, size);
    let h = 0;
    let range = { size: 0, hashes: [] as Uint8Array[] };
    let nodes = 0;
    const checkHeads = async () => {
      while (h < heads.length && heads[h].size <= range.size) {
        const head = await this.#verifyHead(
          heads[h].note,
          `the tree head of size ${heads[h].size}`,
        );
        if (
          head.size !== heads[h].size || head.size !== range.size ||
          !equalBytes(head.root, compactRangeRoot(range))
        ) {
          throw logTampered(
            `the tree head of size ${heads[h].size} does not match the entries`,
          );
        }
        h++;
      }
    };
    await checkHeads();
    for (let start = 0; start < size; start += INTEGRATION_BATCH) {
      const end = Math.min(size, start + INTEGRATION_BATCH);
      const records = await this.#store.entries(start, end);
      if (records.length !== end - start) {
        throw logTampered(`log entries in [${start}, ${end}) are missing`);
      }
      const hashes = records.map((r, i) => {
        const leaf = this.#leaf(start + i, r);
        if (leaf.leafIndex !== start + i) {
          throw logTampered(
            `log entry ${start + i} names index ${leaf.leafIndex}`,
          );
        }
        return leafHash(merkleTreeLeaf(leaf.timestampedEntry));
      });
      // Heads may fall inside the batch: append leaf by leaf up to each.
      let done = 0;
      const computed: { id: NodeId; hash: Uint8Array }[] = [];
      while (done < hashes.length) {
        const next = h < heads.length
          ? Math.min(hashes.length, heads[h].size - start)
          : hashes.length;
        const step = appendLeaves(
          range,
          hashes.slice(done, Math.max(next, done + 1)),
        );
        for (const n of step.nodes) {
          computed.push({
            id: { level: n.level, index: n.index },
            hash: n.hash,
          });
        }
        range = step.range;
        done = range.size - start;
        await checkHeads();
      }
      const stored = await this.#store.nodes(computed.map((c) => c.id));
      computed.forEach((c, i) => {
        if (!stored[i] || !equalBytes(stored[i]!, c.hash)) {
          throw logTampered(
            `stored tree node ${c.id.level}/${c.id.index} does not match the entries`,
          );
        }
      });
      nodes += computed.length;
      await onEntries?.(start, records.map((r) => r.entry));
    }
    if (!equalBytes(compactRangeRoot(range), compactRangeRoot(state.range))) {
      throw logTampered("the committed tree state does not match the entries");
    }
    if (h !== heads.length) {
      throw logTampered("a stored tree head is larger than the committed tree");
    }
    return { entries: size, treeHeads: heads.length, nodes };
  }

  #checkSize(name: string, value: number, max: number): void {
    if (!Number.isSafeInteger(value) || value < 0 || value > max) {
      throw new RangeError(
        `Cannot use '${name}' as it must be an integer in 0..${max} (the committed tree has ${this.size} entries): current value is ${value}`,
      );
    }
  }
}
