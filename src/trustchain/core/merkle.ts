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

function _checkSize(name: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new RangeError(
      `Cannot use '${name}' as it must be an integer in 0..${max}: current value is ${value}`,
    );
  }
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
    for (let k = 0; (i & 1) === 1; k++) {
      const level = this.#levels[k];
      if (this.#levels.length === k + 1) this.#levels.push([]);
      this.#levels[k + 1].push(nodeHash(level[i - 1], level[i]));
      i >>= 1;
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
    return size === 0 ? EMPTY_ROOT : this.#subtree(0, size);
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
    return this.#path(index, 0, size);
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
    if (first === 0 || first === second) return [];
    return this.#subproof(first, 0, second, true);
  }

  // MTH(D[lo:hi]). Every range the RFC recursion visits is either an aligned power of two (cached)
  // or splits into an aligned power-of-two left part and a recursive right part.
  #subtree(lo: number, hi: number): Uint8Array {
    const n = hi - lo;
    if ((n & (n - 1)) === 0 && lo % n === 0) {
      const k = Math.log2(n);
      return this.#levels[k][lo / n];
    }
    const k = _largestPowerOfTwoBelow(n);
    return nodeHash(this.#subtree(lo, lo + k), this.#subtree(lo + k, hi));
  }

  // PATH(m, D[lo:hi]) from RFC 9162 §2.1.3.1, with m relative to lo.
  #path(m: number, lo: number, hi: number): Uint8Array[] {
    const n = hi - lo;
    if (n === 1) return [];
    const k = _largestPowerOfTwoBelow(n);
    if (m < k) return [...this.#path(m, lo, lo + k), this.#subtree(lo + k, hi)];
    return [...this.#path(m - k, lo + k, hi), this.#subtree(lo, lo + k)];
  }

  // SUBPROOF(m, D[lo:hi], b) from RFC 9162 §2.1.4.1.
  #subproof(m: number, lo: number, hi: number, b: boolean): Uint8Array[] {
    const n = hi - lo;
    if (m === n) return b ? [] : [this.#subtree(lo, hi)];
    const k = _largestPowerOfTwoBelow(n);
    if (m <= k) {
      return [...this.#subproof(m, lo, lo + k, b), this.#subtree(lo + k, hi)];
    }
    return [
      ...this.#subproof(m - k, lo + k, hi, false),
      this.#subtree(lo, lo + k),
    ];
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
