// Several CA processes on one PostgreSQL database (issue 13), and start-up that does not grow with
// the log. Runs against the throw-away cluster `make test` starts (see tests/_trustchain.ts).
import assert from "node:assert/strict";
import {
  type CaStore,
  CertificateAuthority,
  certificateLogLeaf,
  openNote,
  parseCheckpoint,
  PostgresCaStore,
  SqliteCaStore,
  type TransparencyProof,
  verifyConsistency,
  verifyTransparencyProof,
} from "../src/trustchain/mod.ts";
import {
  checkAfterKill,
  countingStore,
  freshDatabase,
  growLog,
  issueLoop,
  lines,
  type StoreReads,
} from "./_trustchain.ts";
import { fromBase64 } from "../src/trustchain/core/_bytes.ts";

interface Issued {
  n: number;
  serial: string;
  der: string;
  proof: TransparencyProof;
}

Deno.test("two CA processes on one PostgreSQL database issue 500 certificates each at once: one log of 1,000, every proof and every pair of tree heads verifies", async () => {
  await using db = await freshDatabase();
  // Both processes open the CA on the empty database at once: one identity wins, both use it.
  const children = [0, 1].map(() =>
    issueLoop(db.url, 500, [
      "--concurrency",
      "4",
      "--name",
      "pg-ca",
      "--wait-stdin",
    ])
  );
  const outputs = children.map((c) => lines(c.stdout));
  for (const out of outputs) {
    assert.equal((await out.next()).value, "ready");
  }
  // Both are open; closing their stdin starts both issuing.
  await Promise.all(children.map((c) => c.stdin.close()));
  const issued = await Promise.all(outputs.map(async (out) => {
    const mine: Issued[] = [];
    for await (const line of out) mine.push(JSON.parse(line));
    return mine;
  }));
  for (const c of children) {
    const status = await c.status;
    const err = new TextDecoder().decode(
      (await new Response(c.stderr).arrayBuffer()) as ArrayBuffer,
    );
    assert.equal(status.code, 0, err);
  }
  assert.deepEqual(issued.map((i) => i.length), [500, 500]);

  const store = await PostgresCaStore.connect(db.url);
  const ca = await CertificateAuthority.open({
    name: "pg-ca",
    store,
    verify: "full",
  });
  try {
    const counts = await store.counts();
    assert.equal(counts.entries, 1000);
    assert.equal(counts.certificates, 1000);
    assert.equal(ca.treeSize, 1000);
    // One log: every index once, and the two processes' issuances interleave in it.
    const all = issued.flat();
    assert.deepEqual(
      all.map((i) => i.proof.leafIndex).sort((a, b) => a - b),
      Array.from({ length: 1000 }, (_, i) => i),
    );
    const [a, b] = issued.map((mine) => mine.map((i) => i.proof.leafIndex));
    assert.ok(
      Math.min(...a) < Math.max(...b) && Math.min(...b) < Math.max(...a),
      "the two processes did not issue concurrently",
    );
    // Every proof handed out at issuance verifies against the tree head it carries, and a fresh
    // proof against the final head.
    for (const i of all) {
      const der = fromBase64(i.der);
      const leaf = certificateLogLeaf(der, ca.rootDer);
      const head = await verifyTransparencyProof(
        leaf,
        i.proof,
        ca.log.verifiers,
      );
      assert.ok(head.treeSize > i.proof.leafIndex);
      const fresh = (await ca.proof(i.serial))!;
      assert.equal(
        (await verifyTransparencyProof(leaf, fresh, ca.log.verifiers)).treeSize,
        1000,
      );
    }
    // Every tree head either process signed: valid, and consistent with the next and the last.
    const heads = await store.treeHeads();
    assert.ok(heads.length >= 2 && heads.length <= 1000);
    assert.equal(heads.at(-1)!.size, 1000);
    const roots = [];
    for (const h of heads) {
      const cp = parseCheckpoint(
        (await openNote(h.note, ca.log.verifiers)).body,
      );
      assert.equal(cp.treeSize, h.size);
      roots.push(cp.rootHash);
    }
    const last = heads.length - 1;
    for (let i = 0; i < last; i++) {
      for (const j of new Set([i + 1, last])) {
        assert.ok(
          verifyConsistency(
            heads[i].size,
            heads[j].size,
            roots[i],
            roots[j],
            await ca.log.consistencyProof(heads[i].size, heads[j].size),
          ),
          `heads ${heads[i].size} and ${heads[j].size}`,
        );
      }
    }
    // Proofs handed out carry heads from both processes' signatures of the one tree.
    const carried = new Set(all.map((i) => i.proof.treeHead));
    for (const note of carried) {
      const cp = parseCheckpoint((await openNote(note, ca.log.verifiers)).body);
      assert.deepEqual(cp.rootHash, await ca.log.root(cp.treeSize));
    }
  } finally {
    await ca.close();
  }
});

Deno.test("a CA process SIGKILLed mid-issuance on PostgreSQL leaves a consistent database", async () => {
  await using db = await freshDatabase();
  const child = issueLoop(db.url, 1000, ["--concurrency", "4"]);
  child.stderr.cancel();
  let seen = 0;
  for await (const line of lines(child.stdout)) {
    seen = JSON.parse(line).n;
    if (seen >= 40) break;
  }
  child.kill("SIGKILL");
  assert.equal((await child.status).signal, "SIGKILL");
  await checkAfterKill(
    await PostgresCaStore.connect(db.url),
    async () =>
      CertificateAuthority.open({
        name: "loop-ca",
        store: await PostgresCaStore.connect(db.url),
        verify: "full",
      }),
    seen,
    4,
  );
});

const LOG2 = Math.log2;

for (
  const [kind, setup] of [
    ["SQLite", async () => {
      const dir = await Deno.makeTempDir({ prefix: "stoq_open_" });
      return {
        open: (n: number) =>
          Promise.resolve<CaStore>(new SqliteCaStore(`${dir}/${n}.db`)),
        [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
      };
    }],
    ["PostgreSQL", () => {
      const dbs = new Map<number, Awaited<ReturnType<typeof freshDatabase>>>();
      return Promise.resolve({
        open: async (n: number) => {
          if (!dbs.has(n)) dbs.set(n, await freshDatabase());
          return await PostgresCaStore.connect(dbs.get(n)!.url);
        },
        [Symbol.asyncDispose]: async () => {
          for (const db of dbs.values()) await db[Symbol.asyncDispose]();
        },
      });
    }],
  ] as const
) {
  Deno.test(`opening a CA on ${kind} reads O(log n) rows: the same work for 100,000 entries as for 1,000`, async () => {
    await using stores = await setup();
    const sizes = [1_000, 100_000];
    for (const n of sizes) await growLog(() => stores.open(n), "open-ca", n);
    // Opens alternate between the sizes, so warm-up and load fall on both alike.
    const reads: StoreReads[] = [];
    const times: number[][] = sizes.map(() => []);
    for (let run = 0; run < 7; run++) {
      for (const [i, n] of sizes.entries()) {
        const [store, counted] = countingStore(await stores.open(n));
        const start = performance.now();
        const ca = await CertificateAuthority.open({ name: "open-ca", store });
        times[i].push(performance.now() - start);
        assert.equal(ca.treeSize, n);
        await ca.close();
        reads[i] = counted;
      }
    }
    const medians = times.map((t) => t.sort((a, b) => a - b)[3]);
    // The structure, not the clock: the same calls, and rows growing with log2(n) only (the
    // compact range and the nodes of one root: at most ~3 per level).
    assert.deepEqual(
      Object.keys(reads[0].calls).sort(),
      Object.keys(reads[1].calls).sort(),
    );
    for (const method of ["entries", "certificates", "treeHeads"]) {
      assert.equal(reads[1].calls[method], undefined, `open called ${method}`);
    }
    const total = (r: StoreReads) =>
      Object.values(r.rows).reduce((a, b) => a + b, 0);
    for (const [i, n] of sizes.entries()) {
      assert.ok(
        total(reads[i]) <= 3 * LOG2(n) + 10,
        `${total(reads[i])} rows for ${n}`,
      );
    }
    console.log(
      `open on ${kind} (median of 7): ${sizes[0]} entries ${
        medians[0].toFixed(1)
      } ms, ${total(reads[0])} rows; ${sizes[1]} entries ${
        medians[1].toFixed(1)
      } ms, ${total(reads[1])} rows; ratio ${
        (medians[1] / medians[0]).toFixed(2)
      }`,
    );
  });
}
