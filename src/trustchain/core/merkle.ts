/**
 * RFC 9162 Merkle tree hashing, inclusion and consistency proofs, and their verifiers.
 *
 * @module
 */

import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";

/**
 * RFC 9162 §2.1.1 leaf hash: `SHA-256(0x00 || entry)`.
 *
 * @param entry The log entry (for TrustChain's CT log, an RFC 6962 `MerkleTreeLeaf`).
 * @returns The 32-byte leaf hash.
 *
 * @example Hashing an entry
 * ```ts
 * import { leafHash } from "./merkle.ts";
 * console.log(leafHash(new Uint8Array([1, 2, 3])).length); // 32
 * ```
 */
export function leafHash(entry: Uint8Array): Uint8Array {
  const buf = new Uint8Array(entry.length + 1);
  buf.set(entry, 1);
  return sha256(buf);
}

/**
 * RFC 9162 §2.1.1 interior node hash: `SHA-256(0x01 || left || right)`.
 *
 * @param left The left child hash.
 * @param right The right child hash.
 * @returns The 32-byte node hash.
 *
 * @example Combining two leaves
 * ```ts
 * import { leafHash, nodeHash } from "./merkle.ts";
 * const root = nodeHash(leafHash(new Uint8Array([1])), leafHash(new Uint8Array([2])));
 * console.log(root.length); // 32
 * ```
 */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  const buf = new Uint8Array(1 + left.length + right.length);
  buf[0] = 1;
  buf.set(left, 1);
  buf.set(right, 1 + left.length);
  return sha256(buf);
}

/** The hash of the empty tree, `SHA-256()` (RFC 9162 §2.1.1). */
const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

function _largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function _isPowerOfTwo(n: number): boolean {
  return n > 0 && Number.isInteger(Math.log2(n));
}

function _checkSize(name: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new RangeError(
      `Cannot use '${name}' as it must be an integer in 0..${max}: current value is ${value}`,
    );
  }
}

/**
 * A complete subtree of a Merkle tree: the `2^level` leaves starting at leaf `index * 2^level`
 * (level 0 is a leaf hash). Stores keep tree nodes under this key.
 */
export interface NodeId {
  /** The subtree height. */
  level: number;
  /** Which subtree of that height, counted from the left. */
  index: number;
}

/** A complete subtree and its hash. */
export interface TreeNode extends NodeId {
  /** The 32-byte hash of the subtree. */
  hash: Uint8Array;
}

/**
 * The compact range of a tree (its "frontier"): the hashes of the largest complete subtrees that
 * make up leaves `[0, size)`, left to right, one per set bit of `size`. It is all a log needs to
 * append leaves and compute its root, whatever the log's size.
 */
export interface CompactRange {
  /** The number of leaves covered. */
  size: number;
  /** The subtree hashes, largest (leftmost) first. */
  hashes: Uint8Array[];
}

/** Reads stored tree nodes: one hash per id, in order (see {@linkcode rootFromNodes}). */
export type NodeReader = (
  ids: readonly NodeId[],
) => Promise<readonly Uint8Array[]>;

// A node source: the hash of complete subtree (level, index).
type _Get = (level: number, index: number) => Uint8Array;

// MTH(D[lo:hi]). Every range the RFC recursion visits is either an aligned power of two (a stored
// complete subtree) or splits into an aligned power-of-two left part and a recursive right part.
function _subtree(get: _Get, lo: number, hi: number): Uint8Array {
  const n = hi - lo;
  if (_isPowerOfTwo(n) && lo % n === 0) return get(Math.log2(n), lo / n);
  const k = _largestPowerOfTwoBelow(n);
  return nodeHash(_subtree(get, lo, lo + k), _subtree(get, lo + k, hi));
}

// PATH(m, D[lo:hi]) from RFC 9162 §2.1.3.1, with m relative to lo.
function _path(get: _Get, m: number, lo: number, hi: number): Uint8Array[] {
  const n = hi - lo;
  if (n === 1) return [];
  const k = _largestPowerOfTwoBelow(n);
  if (m < k) {
    return [..._path(get, m, lo, lo + k), _subtree(get, lo + k, hi)];
  }
  return [..._path(get, m - k, lo + k, hi), _subtree(get, lo, lo + k)];
}

// SUBPROOF(m, D[lo:hi], b) from RFC 9162 §2.1.4.1.
function _subproof(
  get: _Get,
  m: number,
  lo: number,
  hi: number,
  b: boolean,
): Uint8Array[] {
  const n = hi - lo;
  if (m === n) return b ? [] : [_subtree(get, lo, hi)];
  const k = _largestPowerOfTwoBelow(n);
  if (m <= k) {
    return [..._subproof(get, m, lo, lo + k, b), _subtree(get, lo + k, hi)];
  }
  return [
    ..._subproof(get, m - k, lo + k, hi, false),
    _subtree(get, lo, lo + k),
  ];
}

function _root(get: _Get, size: number): Uint8Array {
  return size === 0 ? EMPTY_ROOT : _subtree(get, 0, size);
}

function _inclusion(get: _Get, index: number, size: number): Uint8Array[] {
  return _path(get, index, 0, size);
}

function _consistency(get: _Get, first: number, second: number): Uint8Array[] {
  if (first === 0 || first === second) return [];
  return _subproof(get, first, 0, second, true);
}

/**
 * Runs a proof computation over stored nodes: once to learn which nodes it needs (O(log n)),
 * then, after one read of those nodes, for real.
 */
async function _fromNodes<T>(
  read: NodeReader,
  compute: (get: _Get) => T,
): Promise<T> {
  const wanted = new Map<string, NodeId>();
  const placeholder = new Uint8Array(32);
  compute((level, index) => {
    wanted.set(`${level}/${index}`, { level, index });
    return placeholder;
  });
  const ids = [...wanted.values()];
  const hashes = ids.length ? await read(ids) : [];
  const found = new Map<string, Uint8Array>();
  ids.forEach((id, i) => {
    const hash = hashes[i];
    if (!(hash instanceof Uint8Array) || hash.length !== 32) {
      throw new RangeError(
        `Tree node ${id.level}/${id.index} is missing or not a 32-byte hash`,
      );
    }
    found.set(`${id.level}/${id.index}`, hash);
  });
  return compute((level, index) => found.get(`${level}/${index}`)!);
}

/**
 * The root hash (MTH) of the first `size` leaves, from stored complete-subtree hashes: reads
 * O(log size) nodes.
 *
 * @param read Reads nodes by id.
 * @param size The tree size.
 * @returns The 32-byte root hash.
 * @throws {RangeError} When a node the computation needs is missing.
 *
 * @example From a tree's own nodes
 * ```ts
 * import { leafHash, MerkleTree, rootFromNodes } from "./merkle.ts";
 * const tree = new MerkleTree();
 * for (let i = 0; i < 5; i++) tree.append(leafHash(new Uint8Array([i])));
 * const read = (ids: readonly { level: number; index: number }[]) =>
 *   Promise.resolve(ids.map((id) => tree.subtreeHash(id.level, id.index)));
 * console.log((await rootFromNodes(read, 5)).join() === tree.root().join()); // true
 * ```
 */
export function rootFromNodes(
  read: NodeReader,
  size: number,
): Promise<Uint8Array> {
  _checkSize("size", size, Number.MAX_SAFE_INTEGER);
  return _fromNodes(read, (get) => _root(get, size));
}

/**
 * RFC 9162 §2.1.3.1 inclusion proof from stored complete-subtree hashes (O(log size) nodes).
 *
 * @param read Reads nodes by id.
 * @param index The leaf index.
 * @param size The tree size, greater than `index`.
 * @returns The audit path, bottom-up.
 * @throws {RangeError} When a node the proof needs is missing.
 *
 * @example Same proof as the in-memory tree
 * ```ts
 * import { inclusionProofFromNodes, leafHash, MerkleTree } from "./merkle.ts";
 * const tree = new MerkleTree();
 * for (let i = 0; i < 7; i++) tree.append(leafHash(new Uint8Array([i])));
 * const read = (ids: readonly { level: number; index: number }[]) =>
 *   Promise.resolve(ids.map((id) => tree.subtreeHash(id.level, id.index)));
 * console.log((await inclusionProofFromNodes(read, 3, 7)).length); // 3
 * ```
 */
export function inclusionProofFromNodes(
  read: NodeReader,
  index: number,
  size: number,
): Promise<Uint8Array[]> {
  _checkSize("size", size, Number.MAX_SAFE_INTEGER);
  _checkSize("index", index, size - 1);
  return _fromNodes(read, (get) => _inclusion(get, index, size));
}

/**
 * RFC 9162 §2.1.4.1 consistency proof from stored complete-subtree hashes (O(log second) nodes).
 *
 * @param read Reads nodes by id.
 * @param first The older tree size.
 * @param second The newer tree size.
 * @returns The proof nodes.
 * @throws {RangeError} When a node the proof needs is missing.
 *
 * @example Same proof as the in-memory tree
 * ```ts
 * import { consistencyProofFromNodes, leafHash, MerkleTree } from "./merkle.ts";
 * const tree = new MerkleTree();
 * for (let i = 0; i < 7; i++) tree.append(leafHash(new Uint8Array([i])));
 * const read = (ids: readonly { level: number; index: number }[]) =>
 *   Promise.resolve(ids.map((id) => tree.subtreeHash(id.level, id.index)));
 * console.log((await consistencyProofFromNodes(read, 3, 7)).length); // 4
 * ```
 */
export function consistencyProofFromNodes(
  read: NodeReader,
  first: number,
  second: number,
): Promise<Uint8Array[]> {
  _checkSize("second", second, Number.MAX_SAFE_INTEGER);
  _checkSize("first", first, second);
  return _fromNodes(read, (get) => _consistency(get, first, second));
}

/**
 * The ids of the nodes in the compact range of a tree of `size` leaves, largest first.
 *
 * @param size The tree size.
 * @returns One id per set bit of `size`.
 *
 * @example Five leaves: a subtree of four, then one leaf
 * ```ts
 * import { compactRangeIds } from "./merkle.ts";
 * console.log(compactRangeIds(5)); // [ { level: 2, index: 0 }, { level: 0, index: 4 } ]
 * ```
 */
export function compactRangeIds(size: number): NodeId[] {
  _checkSize("size", size, Number.MAX_SAFE_INTEGER);
  const ids: NodeId[] = [];
  let start = 0;
  for (let level = 52; level >= 0; level--) {
    const width = 2 ** level;
    if (size - start >= width) {
      ids.push({ level, index: start / width });
      start += width;
    }
  }
  return ids;
}

/** Throws a `RangeError` unless `range` is a well-formed compact range. */
function _checkRange(range: CompactRange): void {
  if (
    typeof range !== "object" || range === null ||
    !Number.isSafeInteger(range.size) || range.size < 0 ||
    !Array.isArray(range.hashes) ||
    range.hashes.length !== compactRangeIds(range.size).length ||
    !range.hashes.every((h) => h instanceof Uint8Array && h.length === 32)
  ) {
    throw new RangeError(
      "Cannot use the compact range as it must hold one 32-byte hash per set bit of its size",
    );
  }
}

/**
 * The root hash of the tree a compact range covers.
 *
 * @param range The compact range.
 * @returns The 32-byte root hash (the empty tree's hash for size 0).
 * @throws {RangeError} When the range is malformed.
 *
 * @example The empty tree
 * ```ts
 * import { compactRangeRoot } from "./merkle.ts";
 * console.log(compactRangeRoot({ size: 0, hashes: [] }).length); // 32
 * ```
 */
export function compactRangeRoot(range: CompactRange): Uint8Array {
  _checkRange(range);
  const { hashes } = range;
  if (hashes.length === 0) return EMPTY_ROOT;
  let root = hashes[hashes.length - 1];
  for (let i = hashes.length - 2; i >= 0; i--) root = nodeHash(hashes[i], root);
  return root;
}

/**
 * Appends leaves to a tree given only its compact range: the integration step of a log whose
 * storage assigns the leaf indices (as Tessera and Trillian integrate). A pure function of the
 * previous range and the new leaf hashes.
 *
 * @param range The compact range of the tree before.
 * @param leafHashes The new leaves' hashes ({@linkcode leafHash}), in index order.
 * @returns The compact range after, and every complete subtree the new leaves completed (leaf
 * hashes included), for the store to keep.
 * @throws {RangeError} When the range or a hash is malformed.
 *
 * @example Growing a tree from its frontier alone
 * ```ts
 * import { appendLeaves, compactRangeRoot, leafHash, MerkleTree } from "./merkle.ts";
 * const tree = new MerkleTree();
 * let range = { size: 0, hashes: [] as Uint8Array[] };
 * for (let i = 0; i < 6; i++) {
 *   const h = leafHash(new Uint8Array([i]));
 *   tree.append(h);
 *   range = appendLeaves(range, [h]).range;
 * }
 * console.log(compactRangeRoot(range).join() === tree.root().join()); // true
 * ```
 */
export function appendLeaves(
  range: CompactRange,
  leafHashes: readonly Uint8Array[],
): { range: CompactRange; nodes: TreeNode[] } {
  _checkRange(range);
  const hashes = [...range.hashes];
  const nodes: TreeNode[] = [];
  let size = range.size;
  for (const leaf of leafHashes) {
    if (!(leaf instanceof Uint8Array) || leaf.length !== 32) {
      throw new RangeError("Cannot append leaf as it must be a 32-byte hash");
    }
    let hash = leaf;
    let level = 0;
    let index = size;
    nodes.push({ level, index, hash });
    // Each trailing one bit of the old size is a complete subtree the new leaf completes.
    while (index % 2 === 1) {
      hash = nodeHash(hashes.pop()!, hash);
      index = (index - 1) / 2;
      level++;
      nodes.push({ level, index, hash });
    }
    hashes.push(hash);
    size++;
  }
  return { range: { size, hashes }, nodes };
}

/**
 * An append-only RFC 9162 Merkle tree over leaf hashes, kept in memory.
 *
 * Complete (power-of-two, aligned) subtrees are cached level by level, so roots and proofs for any
 * past tree size cost O(log n) hashes instead of rehashing the whole log.
 *
 * @example Building a tree and proving inclusion
 * ```ts
 * import { leafHash, MerkleTree, verifyInclusion } from "./merkle.ts";
 * const tree = new MerkleTree();
 * for (let i = 0; i < 5; i++) tree.append(leafHash(new Uint8Array([i])));
 * const proof = tree.inclusionProof(3, 5);
 * console.log(verifyInclusion(tree.leaf(3), 3, 5, proof, tree.root(5))); // true
 * ```
 */
export class MerkleTree {
  // #levels[k][i] is the hash of the complete subtree of 2^k leaves starting at leaf i * 2^k.
  #levels: Uint8Array[][] = [[]];
  readonly #get: _Get = (level, index) => this.#levels[level][index];

  /** The number of leaves. */
  get size(): number {
    return this.#levels[0].length;
  }

  /**
   * Appends a leaf hash.
   *
   * @param hash A 32-byte leaf hash from {@linkcode leafHash}.
   * @returns The new leaf's index.
   */
  append(hash: Uint8Array): number {
    if (!(hash instanceof Uint8Array) || hash.length !== 32) {
      throw new TypeError(
        "Cannot append leaf as 'hash' must be a 32-byte Uint8Array",
      );
    }
    const index = this.#levels[0].length;
    this.#levels[0].push(hash);
    let i = index;
    for (let k = 0; i % 2 === 1; k++) {
      const level = this.#levels[k];
      if (this.#levels.length === k + 1) this.#levels.push([]);
      this.#levels[k + 1].push(nodeHash(level[i - 1], level[i]));
      i = (i - 1) / 2;
    }
    return index;
  }

  /**
   * The leaf hash at an index.
   *
   * @param index A leaf index below {@linkcode MerkleTree.size}.
   * @returns The leaf hash.
   */
  leaf(index: number): Uint8Array {
    _checkSize("index", index, this.size - 1);
    return this.#levels[0][index];
  }

  /**
   * The hash of a complete subtree: `MTH(D[index * 2^level : (index + 1) * 2^level])`. Tiles
   * (C2SP tlog-tiles) are made of these.
   *
   * @param level The subtree height (0 for a leaf hash).
   * @param index Which subtree of that height, counted from the left.
   * @returns The 32-byte hash.
   * @throws {RangeError} When the subtree is not complete in the current tree.
   */
  subtreeHash(level: number, index: number): Uint8Array {
    _checkSize("level", level, this.#levels.length - 1);
    _checkSize("index", index, this.#levels[level].length - 1);
    return this.#levels[level][index];
  }

  /**
   * The Merkle tree hash (MTH) of the first `size` leaves.
   *
   * @param size The tree size; defaults to the current size.
   * @returns The 32-byte root hash.
   */
  root(size: number = this.size): Uint8Array {
    _checkSize("size", size, this.size);
    return _root(this.#get, size);
  }

  /**
   * RFC 9162 §2.1.3.1 inclusion proof (audit path) for leaf `index` in the tree of `size` leaves.
   *
   * @param index The leaf index.
   * @param size The tree size, greater than `index`.
   * @returns The audit path, bottom-up.
   */
  inclusionProof(index: number, size: number = this.size): Uint8Array[] {
    _checkSize("size", size, this.size);
    _checkSize("index", index, size - 1);
    return _inclusion(this.#get, index, size);
  }

  /**
   * RFC 9162 §2.1.4.1 consistency proof between tree sizes `first` and `second`.
   *
   * @param first The older tree size, 1..second (0 gives an empty proof).
   * @param second The newer tree size.
   * @returns The consistency proof nodes.
   */
  consistencyProof(first: number, second: number = this.size): Uint8Array[] {
    _checkSize("second", second, this.size);
    _checkSize("first", first, second);
    return _consistency(this.#get, first, second);
  }
}

function _equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * Verifies an inclusion proof with the algorithm of RFC 9162 §2.1.3.2.
 *
 * @param hash The leaf hash.
 * @param index The leaf index.
 * @param size The tree size the proof is for.
 * @param proof The audit path.
 * @param root The expected root hash for `size`.
 * @returns `true` when the proof is valid.
 *
 * @example Verifying a single-leaf tree
 * ```ts
 * import { leafHash, verifyInclusion } from "./merkle.ts";
 * const h = leafHash(new Uint8Array([7]));
 * console.log(verifyInclusion(h, 0, 1, [], h)); // true
 * ```
 */
export function verifyInclusion(
  hash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (
    !Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 ||
    index >= size
  ) {
    return false;
  }
  let fn = index;
  let sn = size - 1;
  let r = hash;
  for (const p of proof) {
    if (sn === 0) return false;
    if ((fn & 1) === 1 || fn === sn) {
      r = nodeHash(p, r);
      if ((fn & 1) === 0) {
        while ((fn & 1) === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && _equal(r, root);
}

/**
 * Verifies a consistency proof with the algorithm of RFC 9162 §2.1.4.2.
 *
 * @param first The older tree size.
 * @param second The newer tree size.
 * @param firstRoot The root hash of the older tree.
 * @param secondRoot The root hash of the newer tree.
 * @param proof The consistency proof.
 * @returns `true` when the newer tree extends the older one.
 *
 * @example Equal sizes need an empty proof
 * ```ts
 * import { leafHash, verifyConsistency } from "./merkle.ts";
 * const h = leafHash(new Uint8Array([7]));
 * console.log(verifyConsistency(1, 1, h, h, [])); // true
 * ```
 */
export function verifyConsistency(
  first: number,
  second: number,
  firstRoot: Uint8Array,
  secondRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (
    !Number.isSafeInteger(first) || !Number.isSafeInteger(second) ||
    first < 0 || first > second
  ) {
    return false;
  }
  if (first === second) {
    return proof.length === 0 && _equal(firstRoot, secondRoot);
  }
  // Anything is consistent with the empty tree, but the RFC only defines proofs for first > 0.
  if (first === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  let path = proof;
  // If first is an exact power of two, prepend first_hash to the path.
  if ((first & (first - 1)) === 0) path = [firstRoot, ...proof];
  let fn = first - 1;
  let sn = second - 1;
  if ((fn & 1) === 1) {
    while ((fn & 1) === 1) {
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if ((fn & 1) === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if ((fn & 1) === 0) {
        while ((fn & 1) === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return _equal(fr, firstRoot) && _equal(sr, secondRoot) && sn === 0;
}
