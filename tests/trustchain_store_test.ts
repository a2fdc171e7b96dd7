import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { StoqError } from "../src/errors.ts";
import {
  type CaStore,
  CertificateAuthority,
  certificateLogLeaf,
  MemoryCaStore,
  openCaStore,
  parseTileLeaf,
  PostgresCaStore,
  SqliteCaStore,
  tileLeaf,
  verifyConsistency,
  verifyTransparencyProof,
} from "../src/trustchain/mod.ts";
import {
  checkAfterKill,
  freshDatabase,
  issueLoop,
  lines,
} from "./_trustchain.ts";

async function tempDb(): Promise<
  { dir: string; path: string; [Symbol.asyncDispose](): Promise<void> }
> {
  const dir = await Deno.makeTempDir({ prefix: "stoq_store_" });
  return {
    dir,
    path: `${dir}/ca.db`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

async function open(
  path: string,
  opts: { trustedCheckpoint?: string; verify?: "state" | "full" } = {},
): Promise<CertificateAuthority> {
  return await CertificateAuthority.open({
    name: "store-ca",
    store: new SqliteCaStore(path),
    ...opts,
  });
}

/** Runs SQL through a separate connection, as an attacker or a bad disk would. */
function tamper(path: string, fn: (db: DatabaseSync) => void): void {
  const db = new DatabaseSync(path);
  try {
    fn(db);
  } finally {
    db.close();
  }
}

const isCode = (code: string) => (e: unknown) =>
  e instanceof StoqError && e.code === code;

async function seeded(path: string, n: number): Promise<string> {
  const ca = await open(path);
  for (let i = 0; i < n; i++) await ca.provision(`app-${i}`);
  const checkpoint = await ca.checkpoint();
  await ca.close();
  return checkpoint;
}

/** Opening (default verification) fails with `code`, and so does a full audit. */
async function assertOpenFails(path: string, code: string): Promise<void> {
  await assert.rejects(open(path), isCode(code));
  await assert.rejects(open(path, { verify: "full" }), isCode(code));
}

/** The default open succeeds (it reads no entries), but a full audit and reads fail with `code`. */
async function assertReadsFail(
  path: string,
  code: string,
  read: (ca: CertificateAuthority) => Promise<unknown>,
): Promise<void> {
  await assert.rejects(open(path, { verify: "full" }), isCode(code));
  const ca = await open(path);
  try {
    await assert.rejects(read(ca), isCode(code));
  } finally {
    await ca.close();
  }
}

Deno.test("a reopened CA keeps its root, log and revocations", async () => {
  await using tmp = await tempDb();
  const ca = await open(tmp.path);
  const id = await ca.provision("keep");
  await ca.revoke(id.serial, "superseded");
  const root = ca.rootPem;
  await ca.close();
  await ca.close(); // idempotent
  const again = await open(tmp.path, { verify: "full" });
  try {
    assert.equal(again.rootPem, root);
    assert.equal(again.log.size, 1);
    assert.equal((await again.status(id.serial)).status, "revoked");
    assert.deepEqual(await again.proof(id.serial), id.proof);
  } finally {
    await again.close();
  }
});

for (
  const [kind, make] of [
    ["memory", () => Promise.resolve(new MemoryCaStore())],
    ["sqlite", async () => {
      const dir = await Deno.makeTempDir({ prefix: "stoq_store_" });
      return new SqliteCaStore(`${dir}/ca.db`);
    }],
    ["postgres", async () => {
      const db = await freshDatabase();
      const store = await PostgresCaStore.connect(db.url);
      const close = store.close.bind(store);
      // Drop the database once the store is closed.
      store.close = async () => {
        await close();
        await db[Symbol.asyncDispose]();
      };
      return store;
    }],
  ] as [string, () => Promise<CaStore>][]
) {
  Deno.test(`${kind} store: indices come from the store, one log across concurrent issuers, close is async`, async () => {
    const store = await make();
    const ca = await CertificateAuthority.open({ name: "conc-ca", store });
    try {
      // 24 issuances at once: the store sequences them; heads are signed over committed states.
      const issued = await Promise.all(
        Array.from({ length: 24 }, (_, i) => ca.provision(`c-${i}`)),
      );
      assert.deepEqual(
        issued.map((i) => i.proof.leafIndex).sort((a, b) => a - b),
        Array.from({ length: 24 }, (_, i) => i),
      );
      for (const id of issued) {
        await verifyTransparencyProof(
          certificateLogLeaf(id.der, ca.rootDer),
          id.proof,
          ca.log.verifiers,
        );
      }
      const counts = await store.counts();
      assert.equal(counts.entries, 24);
      assert.equal(counts.certificates, 24);
      // Concurrent issuers share heads: fewer heads than issuances, all consistent.
      assert.ok(counts.treeHeads >= 1 && counts.treeHeads <= 24);
      const heads = await store.treeHeads();
      for (let i = 1; i < heads.length; i++) {
        const [a, b] = [heads[i - 1], heads[i]];
        assert.ok(
          verifyConsistency(
            a.size,
            b.size,
            await ca.log.root(a.size),
            await ca.log.root(b.size),
            await ca.log.consistencyProof(a.size, b.size),
          ),
        );
      }
      // A taken serial is refused by the store and nothing changes.
      const [first] = await store.certificates(0, 1);
      const [entry] = await store.entries(0, 1);
      await assert.rejects(
        store.sequence(1, (index) => [{
          entry,
          certificate: { ...first, leafIndex: index },
        }]),
        isCode("STORE_ERROR"),
      );
      assert.deepEqual(await store.counts(), counts);
      assert.equal(await store.sequencedSize(), 24);
      assert.equal((await ca.audit()).entries, 24);
    } finally {
      await ca.close();
    }
    await store.close(); // idempotent
    await assert.rejects(store.counts(), isCode("CLOSED"));
  });
}

Deno.test("openCaStore picks the store from its URL", async () => {
  await using tmp = await tempDb();
  await using db = await freshDatabase();
  const stores = [
    [await openCaStore(`sqlite:${tmp.path}`), SqliteCaStore],
    [await openCaStore(`file://${tmp.dir}/b.db`), SqliteCaStore],
    [await openCaStore(`${tmp.dir}/c.db`), SqliteCaStore],
    [await openCaStore("memory:"), MemoryCaStore],
    [await openCaStore(db.url), PostgresCaStore],
    [
      await openCaStore(db.url.replace("postgres://", "postgresql://")),
      PostgresCaStore,
    ],
  ] as const;
  for (const [store, type] of stores) {
    assert.ok(store instanceof type);
    assert.equal((await store.counts()).entries, 0);
    await store.close();
  }
  await assert.rejects(openCaStore("mysql://x/y"), isCode("INVALID_ARGUMENT"));
  await assert.rejects(
    openCaStore("postgres://stoq@localhost/"),
    isCode("INVALID_ARGUMENT"),
  );
  await assert.rejects(
    openCaStore(
      "postgres://stoq@localhost/x?host=/nonexistent-dir&port=1",
      { connectTimeoutSeconds: 2 },
    ),
    isCode("STORE_ERROR"),
  );
});

Deno.test("a changed log entry is detected when read and by a full audit", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 3);
  tamper(tmp.path, (db) => {
    const row = db.prepare("SELECT entry FROM log_entries WHERE leaf_index = 1")
      .get() as { entry: Uint8Array };
    const entry = new Uint8Array(row.entry);
    entry[entry.length - 5] ^= 1;
    db.prepare("UPDATE log_entries SET entry = ? WHERE leaf_index = 1").run(
      entry,
    );
  });
  await assertReadsFail(tmp.path, "LOG_TAMPERED", (ca) => ca.logEntries(0, 3));
});

Deno.test("a deleted log entry is detected when read and by a full audit", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 3);
  tamper(
    tmp.path,
    (db) =>
      db.exec(
        "PRAGMA foreign_keys=OFF; DELETE FROM log_entries WHERE leaf_index = 1",
      ),
  );
  await assertReadsFail(tmp.path, "LOG_TAMPERED", (ca) => ca.logEntries(0, 3));
});

Deno.test("rewritten history (entries swapped) is detected when read and by a full audit", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 3);
  tamper(tmp.path, (db) => {
    const rows = db.prepare(
      "SELECT leaf_index, entry, mac FROM log_entries ORDER BY leaf_index",
    ).all() as { entry: Uint8Array; mac: Uint8Array }[];
    db.exec("BEGIN");
    const update = db.prepare(
      "UPDATE log_entries SET entry = ?, mac = ? WHERE leaf_index = ?",
    );
    update.run(rows[1].entry, rows[1].mac, 0);
    update.run(rows[0].entry, rows[0].mac, 1);
    db.exec("COMMIT");
  });
  await assertReadsFail(tmp.path, "LOG_TAMPERED", (ca) => ca.logEntries(0, 2));
});

Deno.test("a log entry whose precertificate was swapped is detected", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 3);
  // The precertificate is stored beside the Merkle leaf, not hashed into it: the MAC covers it.
  tamper(tmp.path, (db) => {
    const rows = db.prepare(
      "SELECT leaf_index, entry FROM log_entries ORDER BY leaf_index",
    ).all() as { leaf_index: number; entry: Uint8Array }[];
    const own = parseTileLeaf(new Uint8Array(rows[1].entry));
    const other = parseTileLeaf(new Uint8Array(rows[2].entry));
    db.prepare("UPDATE log_entries SET entry = ? WHERE leaf_index = 1").run(
      tileLeaf(own.timestampedEntry, other.preCertificate!, own.chain),
    );
  });
  await assertReadsFail(tmp.path, "LOG_TAMPERED", (ca) => ca.logEntries(1, 2));
});

Deno.test("a forged latest tree head is detected at open", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 2);
  tamper(tmp.path, (db) => {
    const { note } = db.prepare(
      "SELECT note FROM tree_heads ORDER BY tree_size DESC LIMIT 1",
    ).get() as { note: string };
    const lines = note.split("\n");
    lines[2] = lines[2].startsWith("A")
      ? `B${lines[2].slice(1)}`
      : `A${lines[2].slice(1)}`;
    db.prepare(
      "UPDATE tree_heads SET note = ? WHERE tree_size = (SELECT max(tree_size) FROM tree_heads)",
    ).run(lines.join("\n"));
  });
  await assertOpenFails(tmp.path, "LOG_TAMPERED");
});

Deno.test("a forged older tree head is detected by a full audit", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 3);
  tamper(tmp.path, (db) => {
    const { note } = db.prepare(
      "SELECT note FROM tree_heads WHERE tree_size = 1",
    ).get() as { note: string };
    db.prepare("UPDATE tree_heads SET note = ? WHERE tree_size = 1").run(
      note.replace(
        /\n— (\S+) (.)/,
        (_m, k, c) => `\n— ${k} ${c === "A" ? "B" : "A"}`,
      ),
    );
  });
  const ca = await open(tmp.path);
  await ca.close();
  await assert.rejects(
    open(tmp.path, { verify: "full" }),
    isCode("LOG_TAMPERED"),
  );
});

Deno.test("a changed tree state or stored node is detected at open or when it proves", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 5);
  await using copy = await tempDb();
  await Deno.copyFile(tmp.path, copy.path);
  // The committed state (the compact range) carries a MAC: rolling it back is caught at open.
  tamper(tmp.path, (db) => {
    db.exec("UPDATE tree_state SET size = 4, hashes = substr(hashes, 1, 32)");
  });
  await assertOpenFails(tmp.path, "LOG_TAMPERED");
  // A node of the compact range is checked at open; any other node when a proof uses it.
  tamper(copy.path, (db) => {
    db.exec(
      "UPDATE tree_nodes SET hash = zeroblob(32) WHERE level = 0 AND idx = 1",
    );
  });
  const store = new SqliteCaStore(copy.path);
  const [cert] = await store.certificates(0, 1);
  await store.close();
  const ca = await open(copy.path);
  try {
    // The CA checks a proof against the signed root before serving it.
    await assert.rejects(ca.proof(cert.serial), isCode("LOG_TAMPERED"));
  } finally {
    await ca.close();
  }
  await assert.rejects(
    open(copy.path, { verify: "full" }),
    isCode("LOG_TAMPERED"),
  );
});

Deno.test("deleting the newest issuance is caught: the committed tree still holds it", async () => {
  await using tmp = await tempDb();
  const checkpoint = await seeded(tmp.path, 3);
  tamper(tmp.path, (db) => {
    db.exec("BEGIN");
    db.exec("DELETE FROM certificates WHERE leaf_index = 2");
    db.exec("DELETE FROM log_entries WHERE leaf_index = 2");
    db.exec("DELETE FROM tree_heads WHERE tree_size = 3");
    db.exec("UPDATE log_sequence SET next_index = 2");
    db.exec("COMMIT");
  });
  // The state's MAC pins size 3, so the sequence rolled back to 2 is refused at open.
  await assertOpenFails(tmp.path, "LOG_TAMPERED");
  await assert.rejects(
    open(tmp.path, { trustedCheckpoint: checkpoint }),
    isCode("LOG_TAMPERED"),
  );
});

Deno.test("a trusted checkpoint must be of this log and contained in it", async () => {
  await using tmp = await tempDb();
  await using other = await tempDb();
  const checkpoint = await seeded(tmp.path, 3);
  const foreign = await seeded(other.path, 3);
  await (await open(tmp.path, { trustedCheckpoint: checkpoint })).close();
  await assert.rejects(
    open(tmp.path, { trustedCheckpoint: foreign }),
    isCode("LOG_TAMPERED"),
  );
  const ahead = checkpoint.replace("\n3\n", "\n4\n");
  await assert.rejects(
    open(tmp.path, { trustedCheckpoint: ahead }),
    isCode("LOG_TAMPERED"),
  );
});

Deno.test("entries sequenced but not integrated (a crash between the two) are integrated at open", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 3);
  const saved = {
    state: {} as Record<string, unknown>,
    nodes: [] as unknown[],
  };
  tamper(tmp.path, (db) => {
    saved.state = db.prepare("SELECT size, hashes, mac FROM tree_state").get()!;
    saved.nodes = db.prepare("SELECT level, idx, hash FROM tree_nodes").all();
  });
  const ca = await open(tmp.path);
  const late = [await ca.provision("late-1"), await ca.provision("late-2")];
  await ca.close();
  // Put the tree back where it was after 3 entries, as if the process had stopped right after
  // sequencing entries 3 and 4: they are stored and sequenced, not integrated, no head covers them.
  tamper(tmp.path, (db) => {
    db.exec("BEGIN");
    db.prepare("UPDATE tree_state SET size = ?, hashes = ?, mac = ?").run(
      saved.state.size as number,
      saved.state.hashes as Uint8Array,
      saved.state.mac as Uint8Array,
    );
    db.exec("DELETE FROM tree_nodes");
    const insert = db.prepare(
      "INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)",
    );
    for (
      const n of saved.nodes as {
        level: number;
        idx: number;
        hash: Uint8Array;
      }[]
    ) {
      insert.run(n.level, n.idx, n.hash);
    }
    db.exec("DELETE FROM tree_heads WHERE tree_size > 3");
    db.exec("COMMIT");
  });
  const again = await open(tmp.path);
  try {
    assert.equal(again.treeSize, 5);
    for (const id of late) {
      await verifyTransparencyProof(
        certificateLogLeaf(id.der, again.rootDer),
        (await again.proof(id.serial))!,
        again.log.verifiers,
      );
    }
    assert.equal((await again.audit()).entries, 5);
  } finally {
    await again.close();
  }
});

Deno.test("a process killed mid-way through 1,000 issuances leaves a CA that opens and verifies", async () => {
  await using tmp = await tempDb();
  const child = issueLoop(`sqlite:${tmp.path}`, 1000);
  child.stderr.cancel();
  let seen = 0;
  for await (const line of lines(child.stdout)) {
    seen = JSON.parse(line).n;
    if (seen >= 25) break; // leaving the loop cancels the stream
  }
  child.kill("SIGKILL");
  const status = await child.status;
  assert.equal(status.signal, "SIGKILL");
  assert.ok(seen >= 25, "child never reported issuances");
  await checkAfterKill(
    new SqliteCaStore(tmp.path),
    () =>
      CertificateAuthority.open({
        name: "loop-ca",
        store: new SqliteCaStore(tmp.path),
        verify: "full",
      }),
    seen,
  );
});

Deno.test("a CA database of the previous TrustChain is verified and migrated at open, keeping its keys, certificates and log", async () => {
  await using tmp = await tempDb();
  const fixture = new URL(
    "./fixtures/trustchain_legacy_v2.sqlite",
    import.meta.url,
  );
  const { serials, checkpoint } = JSON.parse(
    await Deno.readTextFile(
      new URL("./fixtures/trustchain_legacy_v2.json", import.meta.url),
    ),
  );
  // A tampered legacy log is refused and left as it was.
  await Deno.copyFile(fixture, tmp.path);
  tamper(tmp.path, (db) => {
    db.exec(
      "UPDATE log_entries SET entry = substr(entry, 1, 100) WHERE leaf_index = 2",
    );
  });
  const open = (passphrase?: string) =>
    CertificateAuthority.open({
      name: "legacy-ca",
      store: new SqliteCaStore(tmp.path),
      trustedCheckpoint: checkpoint,
      ...(passphrase ? { passphrase } : {}),
    });
  await assert.rejects(open(), isCode("LOG_TAMPERED"));
  tamper(tmp.path, (db) => {
    const columns = db.prepare("PRAGMA table_info(log_entries)").all();
    assert.ok(
      !columns.some((c) => c.name === "mac"),
      "the legacy file was changed",
    );
  });
  // The untouched file migrates, with its keys wrapped on the way when asked.
  await Deno.copyFile(fixture, tmp.path);
  const ca = await open("upgrade");
  try {
    assert.equal(ca.treeSize, 4);
    for (const serial of serials) {
      const proof = (await ca.proof(serial))!;
      assert.equal(proof.treeHead.split("\n")[1], "4");
    }
    assert.equal((await ca.status(serials[1])).status, "revoked");
    assert.equal((await ca.status(serials[3])).status, "revoked");
    assert.equal((await ca.status(serials[0])).status, "good");
    assert.equal((await ca.audit()).certificates, 4);
    await ca.provision("after-migration");
  } finally {
    await ca.close();
  }
  const again = await open("upgrade");
  assert.equal(again.treeSize, 5);
  await again.close();
  await assert.rejects(open(), isCode("CA_LOCKED"));
});
