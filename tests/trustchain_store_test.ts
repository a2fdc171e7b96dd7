import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { StoqError } from "../src/errors.ts";
import {
  CertificateAuthority,
  leafHash,
  merkleTreeLeaf,
  openNote,
  parseCheckpoint,
  parseTileLeaf,
  SqliteCaStore,
  tileLeaf,
  verifyConsistency,
  verifyInclusion,
} from "../src/trustchain/mod.ts";
import { fromBase64 } from "../src/trustchain/core/_bytes.ts";

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
  trustedCheckpoint?: string,
): Promise<CertificateAuthority> {
  return await CertificateAuthority.open({
    name: "store-ca",
    store: new SqliteCaStore(path),
    trustedCheckpoint,
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

async function assertTampered(
  path: string,
  trustedCheckpoint?: string,
): Promise<void> {
  await assert.rejects(
    open(path, trustedCheckpoint),
    (e: unknown) => e instanceof StoqError && e.code === "LOG_TAMPERED",
  );
}

async function seeded(path: string, n: number): Promise<string> {
  const ca = await open(path);
  for (let i = 0; i < n; i++) await ca.provision(`app-${i}`);
  const checkpoint = await ca.checkpoint();
  ca.close();
  return checkpoint;
}

Deno.test("a reopened CA keeps its root, log and revocations", async () => {
  await using tmp = await tempDb();
  const ca = await open(tmp.path);
  const id = await ca.provision("keep");
  await ca.revoke(id.serial, "superseded");
  const root = ca.rootPem;
  ca.close();
  const again = await open(tmp.path);
  try {
    assert.equal(again.rootPem, root);
    assert.equal(again.log.size, 1);
    assert.equal((await again.status(id.serial)).status, "revoked");
  } finally {
    again.close();
  }
});

Deno.test("a changed log entry is detected on open", async () => {
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
  await assertTampered(tmp.path);
});

Deno.test("a truncated log (entry removed, heads kept) is detected on open", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 3);
  tamper(
    tmp.path,
    (db) =>
      db.exec(
        "PRAGMA foreign_keys=OFF; DELETE FROM log_entries WHERE leaf_index = 2",
      ),
  );
  await assertTampered(tmp.path);
});

Deno.test("rewritten history (entries swapped) is detected on open", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 3);
  tamper(tmp.path, (db) => {
    const rows = db.prepare(
      "SELECT leaf_index, entry FROM log_entries ORDER BY leaf_index",
    ).all() as {
      leaf_index: number;
      entry: Uint8Array;
    }[];
    db.exec("BEGIN");
    db.prepare("UPDATE log_entries SET entry = ? WHERE leaf_index = 0").run(
      rows[1].entry,
    );
    db.prepare("UPDATE log_entries SET entry = ? WHERE leaf_index = 1").run(
      rows[0].entry,
    );
    db.exec("COMMIT");
  });
  await assertTampered(tmp.path);
});

Deno.test("a log entry whose precertificate was swapped is detected on open", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 3);
  // The precertificate is stored beside the Merkle leaf, not hashed into it: the audit checks it.
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
  await assertTampered(tmp.path);
});

Deno.test("a forged tree head is detected on open", async () => {
  await using tmp = await tempDb();
  await seeded(tmp.path, 2);
  tamper(tmp.path, (db) => {
    const { note } = db.prepare(
      "SELECT note FROM tree_heads WHERE tree_size = 1",
    ).get() as { note: string };
    const lines = note.split("\n");
    lines[2] = lines[2].startsWith("A")
      ? `B${lines[2].slice(1)}`
      : `A${lines[2].slice(1)}`;
    db.prepare("UPDATE tree_heads SET note = ? WHERE tree_size = 1").run(
      lines.join("\n"),
    );
  });
  await assertTampered(tmp.path);
});

Deno.test("a consistent truncation is caught against a published checkpoint", async () => {
  await using tmp = await tempDb();
  const checkpoint = await seeded(tmp.path, 3);
  tamper(tmp.path, (db) => {
    db.exec("BEGIN");
    db.exec("DELETE FROM certificates WHERE leaf_index = 2");
    db.exec("DELETE FROM log_entries WHERE leaf_index = 2");
    db.exec("DELETE FROM tree_heads WHERE tree_size = 3");
    db.exec("COMMIT");
  });
  // Internally consistent, so only the externally kept checkpoint reveals it.
  const ca = await open(tmp.path);
  assert.equal(ca.log.size, 2);
  ca.close();
  await assertTampered(tmp.path, checkpoint);
});

Deno.test("a process killed mid-way through 1,000 issuances leaves a CA that opens and verifies", async () => {
  await using tmp = await tempDb();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./fixtures/trustchain_issue_loop.ts", import.meta.url).pathname,
      tmp.path,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream());
  let seen = 0;
  let buffered = "";
  for await (const chunk of lines) {
    buffered += chunk;
    seen = Number(/issued (\d+)\n(?![\s\S]*issued)/.exec(buffered)?.[1] ?? 0);
    if (seen >= 25) break; // leaving the loop cancels the stream
  }
  child.kill("SIGKILL");
  const status = await child.status;
  assert.equal(status.signal, "SIGKILL");
  assert.ok(seen >= 25, "child never reported issuances");

  const ca = await CertificateAuthority.open({
    name: "loop-ca",
    store: new SqliteCaStore(tmp.path),
  });
  try {
    const store = new SqliteCaStore(tmp.path);
    const counts = await store.counts();
    const heads = await store.treeHeads();
    const entries = await store.entries();
    const lastCert = (await store.certificates()).at(-1)!;
    store.close();
    // Every printed issuance was committed; at most the one in flight may have committed unprinted.
    assert.ok(counts.certificates >= seen && counts.certificates <= seen + 1);
    assert.equal(counts.entries, counts.certificates);
    assert.equal(counts.treeHeads, counts.certificates);
    assert.equal(ca.log.size, counts.entries);
    const last = parseCheckpoint(
      (await openNote(heads.at(-1)!, ca.log.verifiers)).body,
    );
    assert.equal(last.treeSize, entries.length);
    assert.deepEqual(last.rootHash, ca.log.root());
    const first = parseCheckpoint(
      (await openNote(heads[0], ca.log.verifiers)).body,
    );
    const consistency = ca.log.consistencyProof(first.treeSize);
    assert.ok(
      verifyConsistency(
        first.treeSize,
        last.treeSize,
        first.rootHash,
        last.rootHash,
        consistency,
      ),
    );
    const proof = (await ca.proof(lastCert.serial))!;
    assert.equal(proof.leafIndex, entries.length - 1);
    const path = proof.inclusionPath.map(fromBase64);
    assert.ok(
      verifyInclusion(
        leafHash(
          merkleTreeLeaf(parseTileLeaf(entries.at(-1)!).timestampedEntry),
        ),
        proof.leafIndex,
        entries.length,
        path,
        last.rootHash,
      ),
    );
  } finally {
    ca.close();
  }
});
