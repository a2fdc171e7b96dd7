// A CA's state at rest is tamper-evident (issue 10): every change to its identity, SCTs and
// revocations is CA_TAMPERED naming what failed, every malformed record a StoqError; private keys
// can be wrapped with a passphrase or a key file. On SQLite and on PostgreSQL.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { StoqError } from "../src/errors.ts";
import {
  type CaIdentityRecord,
  CertificateAuthority,
  type CertificateAuthorityOptions,
  MemoryCaStore,
  PostgresCaStore,
  SqliteCaStore,
} from "../src/trustchain/mod.ts";
import { adminSql, freshDatabase } from "./_trustchain.ts";

/** One CA database and raw SQL access to it, as an attacker or a bad disk has. */
interface Target extends AsyncDisposable {
  open(
    opts?: Partial<CertificateAuthorityOptions>,
  ): Promise<CertificateAuthority>;
  /** Runs SQL with `?` placeholders; returns the rows. */
  sql(query: string, ...params: unknown[]): Promise<Record<string, unknown>[]>;
}

async function sqliteTarget(): Promise<Target> {
  const dir = await Deno.makeTempDir({ prefix: "stoq_tamper_" });
  const path = `${dir}/ca.db`;
  return {
    open: (opts = {}) =>
      CertificateAuthority.open({
        name: "tamper-ca",
        store: new SqliteCaStore(path),
        ...opts,
      }),
    sql: (query, ...params) => {
      const db = new DatabaseSync(path);
      try {
        db.exec("PRAGMA foreign_keys=OFF");
        return Promise.resolve(
          db.prepare(query).all(
            ...(params as (string | number | Uint8Array)[]),
          ) as Record<string, unknown>[],
        );
      } finally {
        db.close();
      }
    },
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

async function postgresTarget(): Promise<Target> {
  const db = await freshDatabase();
  return {
    open: async (opts = {}) =>
      CertificateAuthority.open({
        name: "tamper-ca",
        store: await PostgresCaStore.connect(db.url),
        ...opts,
      }),
    sql: async (query, ...params) => {
      await using admin = adminSql(db.url);
      let n = 0;
      return [
        ...(await admin.sql.unsafe(
          query.replace(/\?/g, () => `$${++n}`),
          params as string[],
        )),
      ];
    },
    [Symbol.asyncDispose]: () => db[Symbol.asyncDispose](),
  };
}

const TARGETS = [["SQLite", sqliteTarget], [
  "PostgreSQL",
  postgresTarget,
]] as const;

/** A seeded CA: three certificates, the second revoked. Returns their serials. */
async function seed(target: Target): Promise<string[]> {
  const ca = await target.open();
  const serials = [];
  for (let i = 0; i < 3; i++) {
    serials.push((await ca.provision(`app-${i}`)).serial);
  }
  await ca.revoke(serials[1], "keyCompromise");
  await ca.close();
  return serials;
}

async function identity(target: Target): Promise<CaIdentityRecord> {
  const [row] = await target.sql("SELECT record FROM identity WHERE id = 1");
  return JSON.parse(row.record as string);
}

async function setIdentity(target: Target, text: string): Promise<void> {
  await target.sql("UPDATE identity SET record = ? WHERE id = 1", text);
}

/** Another CA's identity record: valid keys that are not this CA's. */
async function otherIdentity(): Promise<CaIdentityRecord> {
  const store = new MemoryCaStore();
  const ca = await CertificateAuthority.open({ name: "tamper-ca", store });
  const record = JSON.parse((await store.loadIdentity())!);
  await ca.close();
  return record;
}

async function assertTampered(
  attempt: Promise<unknown>,
  code: "CA_TAMPERED" | "LOG_TAMPERED",
  naming: RegExp,
): Promise<void> {
  await assert.rejects(attempt, (e: unknown) => {
    assert.ok(e instanceof StoqError, `not a StoqError: ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, naming);
    return true;
  });
}

for (const [kind, make] of TARGETS) {
  Deno.test(`${kind}: a changed log, root or Falcon key or root certificate is CA_TAMPERED at open, naming it`, async () => {
    await using target = await make();
    await seed(target);
    const good = await identity(target);
    const other = await otherIdentity();
    const cases: [Partial<CaIdentityRecord>, RegExp][] = [
      [{ logKey: other.logKey }, /log key changed/],
      [{ logPublicKey: other.logPublicKey }, /log key changed/],
      [{ rootKey: other.rootKey }, /root private key changed/],
      [{ falconSecretKey: other.falconSecretKey }, /Falcon key changed/],
      [{ falconPublicKey: other.falconPublicKey }, /Falcon key changed/],
      [
        { origin: "stoq.trustchain/elsewhere" },
        /CA name, log origin or root certificate changed/,
      ],
      [{ rootDer: other.rootDer }, /seal's signature does not verify/],
      [{ seal: other.seal }, /seal's signature does not verify/],
    ];
    for (const [change, naming] of cases) {
      await setIdentity(target, JSON.stringify({ ...good, ...change }));
      await assertTampered(target.open(), "CA_TAMPERED", naming);
    }
    // Each key replaced together with its seal digest is still caught: the seal is signed.
    await setIdentity(
      target,
      JSON.stringify({
        ...good,
        logKey: other.logKey,
        logPublicKey: other.logPublicKey,
        seal: {
          ...good.seal,
          digests: { ...good.seal.digests, logKey: other.seal.digests.logKey },
        },
      }),
    );
    await assertTampered(target.open(), "CA_TAMPERED", /seal's signature/);
    await setIdentity(target, JSON.stringify(good));
    await (await target.open()).close();
  });

  Deno.test(`${kind}: a truncated or malformed identity record is CA_TAMPERED, never a SyntaxError or TypeError`, async () => {
    await using target = await make();
    await seed(target);
    const text = JSON.stringify(await identity(target));
    const good = JSON.parse(text);
    const bad = [
      text.slice(0, text.length / 2),
      "",
      "null",
      "[]",
      JSON.stringify({ ...good, rootDer: 7 }),
      JSON.stringify({ ...good, rootDer: "!!!" }),
      JSON.stringify({ ...good, seal: null }),
      JSON.stringify({ ...good, seal: { digests: {}, signature: "" } }),
      JSON.stringify({ ...good, format: 99 }),
      JSON.stringify({ ...good, keyWrapping: { kdf: "scrypt", n: 2 ** 40 } }),
      JSON.stringify({ ...good, rootKey: `aes256gcm:${good.rootKey}` }),
    ];
    for (const record of bad) {
      await setIdentity(target, record);
      await assertTampered(target.open(), "CA_TAMPERED", /identity record/);
    }
  });

  Deno.test(`${kind}: a changed SCT is CA_TAMPERED when served and at a full open`, async () => {
    await using target = await make();
    const serials = await seed(target);
    const [row] = await target.sql(
      "SELECT sct FROM certificates WHERE serial = ?",
      serials[0],
    );
    const sct = JSON.parse(row.sct as string);
    const sig = atob(sct.signature);
    const flipped = sig.slice(0, -3) +
      String.fromCharCode(sig.charCodeAt(sig.length - 3) ^ 1) + sig.slice(-2);
    await target.sql(
      "UPDATE certificates SET sct = ? WHERE serial = ?",
      JSON.stringify({ ...sct, signature: btoa(flipped) }),
      serials[0],
    );
    await assertTampered(
      target.open({ verify: "full" }),
      "CA_TAMPERED",
      new RegExp(`certificate ${serials[0]} changed: its SCT`),
    );
    const ca = await target.open();
    try {
      await assertTampered(ca.proof(serials[0]), "CA_TAMPERED", /its SCT/);
      await assertTampered(ca.status(serials[0]), "CA_TAMPERED", /its SCT/);
      // The others are untouched.
      assert.ok(await ca.proof(serials[2]));
    } finally {
      await ca.close();
    }
    // A malformed record is a StoqError too.
    await target.sql(
      "UPDATE certificates SET sct = ? WHERE serial = ?",
      "{",
      serials[0],
    );
    const again = await target.open();
    try {
      await assertTampered(again.proof(serials[0]), "CA_TAMPERED", /malformed/);
    } finally {
      await again.close();
    }
  });

  Deno.test(`${kind}: a deleted, changed or added revocation is CA_TAMPERED at open`, async () => {
    await using target = await make();
    const serials = await seed(target);
    const [rev] = await target.sql("SELECT * FROM revocations");
    const attacks: [string, unknown[], RegExp][] = [
      ["DELETE FROM revocations", [], /a revocation was deleted or added/],
      [
        "UPDATE revocations SET reason = ?",
        ["superseded"],
        /one was changed/,
      ],
      [
        "UPDATE revocations SET revoked_at = revoked_at + 1",
        [],
        /one was changed/,
      ],
      [
        "INSERT INTO revocations (seq, serial, reason, revoked_at) VALUES (7, ?, 'unspecified', 0)",
        [serials[2]],
        /deleted or added/,
      ],
      ["DELETE FROM revocation_seal", [], /deleted or added/],
    ];
    for (const [query, params, naming] of attacks) {
      await target.sql(query, ...params);
      await assertTampered(target.open(), "CA_TAMPERED", naming);
      // Put the revocations back as they were.
      await target.sql("DELETE FROM revocations");
      await target.sql(
        "INSERT INTO revocations (seq, serial, reason, revoked_at) VALUES (?, ?, ?, ?)",
        rev.seq,
        rev.serial,
        rev.reason,
        rev.revoked_at,
      );
      if (query.includes("revocation_seal")) {
        // The seal row is gone for good: the CA refuses to open until it is restored.
        await assertTampered(target.open(), "CA_TAMPERED", /seal covers 0/);
        return;
      }
    }
    const ca = await target.open();
    try {
      assert.equal((await ca.status(serials[1])).status, "revoked");
    } finally {
      await ca.close();
    }
  });

  Deno.test(`${kind}: private keys wrapped with a passphrase open only with it (CA_LOCKED otherwise)`, async () => {
    await using target = await make();
    const ca = await target.open({ passphrase: "correct horse" });
    const root = ca.rootPem;
    await ca.provision("wrapped");
    await ca.close();
    const record = await identity(target);
    for (const key of [record.rootKey, record.logKey, record.falconSecretKey]) {
      assert.match(key, /^aes256gcm:/);
    }
    assert.equal(record.keyWrapping?.kdf, "scrypt");
    const locked = (e: unknown) =>
      e instanceof StoqError && e.code === "CA_LOCKED";
    await assert.rejects(target.open(), locked);
    await assert.rejects(target.open({ passphrase: "wrong horse" }), locked);
    const again = await target.open({ passphrase: "correct horse" });
    assert.equal(again.rootPem, root);
    assert.equal(again.treeSize, 1);
    await again.close();
    // A changed wrapped key fails the seal before any decryption: named, not a wrong passphrase.
    await setIdentity(
      target,
      JSON.stringify({
        ...record,
        logKey: record.logKey.replace(
          /.(?=.{8}$)/,
          (c) => c === "A" ? "B" : "A",
        ),
      }),
    );
    await assertTampered(
      target.open({ passphrase: "correct horse" }),
      "CA_TAMPERED",
      /log key changed/,
    );
  });
}

Deno.test("private keys wrapped with a key file open only with that file; keys in the clear refuse a passphrase", async () => {
  await using target = await sqliteTarget();
  const dir = await Deno.makeTempDir({ prefix: "stoq_keyfile_" });
  try {
    const keyFile = `${dir}/ca.key`;
    await Deno.writeFile(keyFile, crypto.getRandomValues(new Uint8Array(32)));
    await (await target.open({ keyFile })).close();
    assert.equal((await identity(target)).keyWrapping?.kdf, "hkdf-sha256");
    const locked = (e: unknown) =>
      e instanceof StoqError && e.code === "CA_LOCKED";
    await assert.rejects(target.open(), locked);
    await assert.rejects(target.open({ passphrase: "x" }), locked);
    await Deno.writeFile(
      `${dir}/other.key`,
      crypto.getRandomValues(new Uint8Array(32)),
    );
    await assert.rejects(target.open({ keyFile: `${dir}/other.key` }), locked);
    await Deno.writeFile(`${dir}/short.key`, new Uint8Array(31));
    await assert.rejects(target.open({ keyFile: `${dir}/short.key` }), locked);
    await assert.rejects(
      target.open({ keyFile: `${dir}/missing.key` }),
      locked,
    );
    await assert.rejects(
      target.open({ keyFile, passphrase: "x" }),
      TypeError,
    );
    await (await target.open({ keyFile: new URL(`file://${keyFile}`) }))
      .close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await using clear = await sqliteTarget();
  await (await clear.open()).close();
  await assert.rejects(
    clear.open({ passphrase: "late" }),
    (e: unknown) => e instanceof StoqError && e.code === "INVALID_ARGUMENT",
  );
});

Deno.test("a malformed tree state or tree head row is LOG_TAMPERED at open, never a TypeError", async () => {
  for (
    const [query, params] of [
      ["UPDATE tree_state SET hashes = ?", [new Uint8Array(5)]],
      ["UPDATE tree_state SET size = -1", []],
      ["UPDATE tree_heads SET note = 'x'", []],
      ["DELETE FROM tree_state", []],
      ["UPDATE log_sequence SET next_index = 1", []],
    ] as [string, unknown[]][]
  ) {
    await using target = await sqliteTarget();
    await seed(target);
    await target.sql(query, ...params);
    await assert.rejects(
      target.open(),
      (e: unknown) => e instanceof StoqError && e.code === "LOG_TAMPERED",
      query,
    );
  }
});
