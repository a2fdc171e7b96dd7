import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  leafHash,
  MerkleTree,
  verifyConsistency,
  verifyInclusion,
} from "../src/trustchain/core/merkle.ts";

// An independent, naive RFC 9162 §2.1.1 MTH using node:crypto, for reference.
function h(...parts: Uint8Array[]): Uint8Array {
  const hash = createHash("sha256");
  for (const p of parts) hash.update(p);
  return new Uint8Array(hash.digest());
}
function mth(entries: Uint8Array[]): Uint8Array {
  if (entries.length === 0) return h();
  if (entries.length === 1) return h(new Uint8Array([0]), entries[0]);
  let k = 1;
  while (k * 2 < entries.length) k *= 2;
  return h(
    new Uint8Array([1]),
    mth(entries.slice(0, k)),
    mth(entries.slice(k)),
  );
}

const entries = Array.from(
  { length: 64 },
  (_, i) => new TextEncoder().encode(`entry-${i}`),
);
const tree = new MerkleTree();
for (const e of entries) tree.append(leafHash(e));
const roots = Array.from({ length: 65 }, (_, n) => mth(entries.slice(0, n)));

function flip(proof: Uint8Array[], i: number): Uint8Array[] {
  const out = proof.map((p) => p.slice());
  out[i][i % 32] ^= 1;
  return out;
}

Deno.test("merkle roots match a naive MTH for every size 0..64", () => {
  for (let n = 0; n <= 64; n++) {
    assert.deepEqual(tree.root(n), roots[n], `size ${n}`);
  }
});

Deno.test("inclusion proofs verify for every index of every size 1..64 and tampering fails", () => {
  for (let n = 1; n <= 64; n++) {
    for (let i = 0; i < n; i++) {
      const proof = tree.inclusionProof(i, n);
      const lh = leafHash(entries[i]);
      assert.ok(
        verifyInclusion(lh, i, n, proof, roots[n]),
        `index ${i} size ${n}`,
      );
      // Wrong leaf, wrong index, wrong size, altered or truncated path, wrong root all fail.
      assert.ok(
        !verifyInclusion(
          leafHash(entries[(i + 1) % 64]),
          i,
          n,
          proof,
          roots[n],
        ),
      );
      if (n > 1) {
        assert.ok(!verifyInclusion(lh, (i + 1) % n, n, proof, roots[n]));
      }
      assert.ok(!verifyInclusion(lh, i, n + 1, proof, roots[n + 1]));
      assert.ok(!verifyInclusion(lh, i, n, proof, roots[n - 1]));
      for (let j = 0; j < proof.length; j++) {
        assert.ok(
          !verifyInclusion(lh, i, n, flip(proof, j), roots[n]),
          `flip ${j}`,
        );
      }
      if (proof.length > 0) {
        assert.ok(!verifyInclusion(lh, i, n, proof.slice(0, -1), roots[n]));
      }
      assert.ok(!verifyInclusion(lh, i, n, [...proof, roots[n]], roots[n]));
    }
  }
});

Deno.test("consistency proofs verify for every pair m <= n <= 64 and tampering fails", () => {
  for (let n = 1; n <= 64; n++) {
    for (let m = 1; m <= n; m++) {
      const proof = tree.consistencyProof(m, n);
      assert.ok(
        verifyConsistency(m, n, roots[m], roots[n], proof),
        `m ${m} n ${n}`,
      );
      if (m === n) {
        assert.equal(proof.length, 0);
        continue;
      }
      assert.ok(
        !verifyConsistency(m, n, roots[m - 1], roots[n], proof),
        "wrong old root",
      );
      assert.ok(
        !verifyConsistency(m, n, roots[m], roots[n - 1], proof),
        "wrong new root",
      );
      if (n < 64) {
        assert.ok(
          !verifyConsistency(m, n + 1, roots[m], roots[n + 1], proof),
          "wrong size",
        );
      }
      for (let j = 0; j < proof.length; j++) {
        assert.ok(
          !verifyConsistency(m, n, roots[m], roots[n], flip(proof, j)),
          `flip ${j}`,
        );
      }
      assert.ok(
        !verifyConsistency(m, n, roots[m], roots[n], proof.slice(0, -1)),
        "truncated",
      );
    }
  }
});

Deno.test("merkle tree rejects bad arguments", () => {
  assert.throws(() => tree.inclusionProof(64, 64), RangeError);
  assert.throws(() => tree.consistencyProof(5, 65), RangeError);
  assert.throws(() => new MerkleTree().append(new Uint8Array(31)), TypeError);
});
