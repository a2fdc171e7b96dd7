// TrustChain's Certificate Transparency, checked by implementations that are not ours:
// tools/ctcheck (certificate-transparency-go, transparency-dev/merkle, transparency-dev/formats,
// tessera's tlog-tiles client) verifies embedded SCTs, inclusion proofs and the static-ct-api
// endpoints served on ::1.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  CertificateAuthority,
  embeddedScts,
  MemoryCaStore,
  parseTileLeaf,
  type ProvisionedIdentity,
  serveStaticCt,
  staticCtHandler,
} from "../src/trustchain/mod.ts";
import { createKeyAndCsr } from "../src/trustchain/core/keys.ts";
import { fromBase64, toBase64 } from "../src/trustchain/core/_bytes.ts";
import { ctcheck, LONG_NAME } from "./_trustchain.ts";

function chainOf(id: { der: Uint8Array }, ca: CertificateAuthority): string[] {
  return [toBase64(id.der), toBase64(ca.rootDer)];
}

Deno.test("issued certificates embed SCTs that certificate-transparency-go verifies offline", async () => {
  const ca = await CertificateAuthority.open({
    name: "ct-ca",
    store: new MemoryCaStore(),
  });
  const { csr } = await createKeyAndCsr("from-csr.stoq.local");
  const issued = [
    await ca.provision("app"),
    await ca.provision(LONG_NAME),
    await ca.issue(csr),
  ];
  for (const [i, id] of issued.entries()) {
    const out = await ctcheck("sct", {
      chain: chainOf(id, ca),
      logKey: toBase64(ca.log.publicKey),
    });
    const [sct] = out.scts as {
      logId: string;
      leafIndex: number;
      timestamp: number;
    }[];
    // The log ID is SHA-256 of the log key's DER SubjectPublicKeyInfo.
    const logId = createHash("sha256").update(ca.log.publicKey).digest();
    assert.equal(sct.logId, toBase64(new Uint8Array(logId)));
    assert.equal(sct.leafIndex, i);
    assert.equal(sct.leafIndex, id.proof.leafIndex);
    assert.deepEqual(embeddedScts(id.der), [id.proof.sct]);
  }
  // Another log's key does not verify them, and a changed SCT signature is caught.
  const other = await CertificateAuthority.open({
    name: "other",
    store: new MemoryCaStore(),
  });
  await assert.rejects(
    ctcheck("sct", {
      chain: chainOf(issued[0], ca),
      logKey: toBase64(other.log.publicKey),
    }),
    /log ID/,
  );
  const der = issued[0].der.slice();
  const sig = fromBase64(issued[0].proof.sct.signature);
  const at = _indexOf(der, sig.subarray(-20));
  assert.ok(at > 0);
  der[at + 5] ^= 0x01;
  await assert.rejects(
    ctcheck("sct", {
      chain: [toBase64(der), toBase64(ca.rootDer)],
      logKey: toBase64(ca.log.publicKey),
    }),
    /does not verify/,
  );
  await ca.close();
  await other.close();
});

Deno.test("inclusion proofs of precertificate entries verify with transparency-dev/merkle", async () => {
  const ca = await CertificateAuthority.open({
    name: "ct-ca",
    store: new MemoryCaStore(),
  });
  const ids: ProvisionedIdentity[] = [];
  for (let i = 0; i < 11; i++) ids.push(await ca.provision(`app-${i}`));
  const check = (id: ProvisionedIdentity, proof = id.proof) =>
    ctcheck("inclusion", {
      chain: chainOf(id, ca),
      logVkey: ca.log.vkeys.log,
      checkpoint: proof.treeHead,
      leafIndex: proof.leafIndex,
      proof: proof.inclusionPath,
    });
  for (const [i, id] of ids.entries()) {
    // Against the tree head signed at issuance (size i + 1) and against the latest one.
    const atIssue = await check(id);
    assert.equal((atIssue.treeHead as { size: number }).size, i + 1);
    const latest = await check(id, (await ca.proof(id.serial))!);
    assert.equal((latest.treeHead as { size: number }).size, ids.length);
    assert.equal(
      (latest.treeHead as { root: string }).root,
      toBase64(await ca.log.root()),
    );
  }
  // A changed path, another entry's proof, or a forged tree head fail.
  const id = ids[5];
  const proof = (await ca.proof(id.serial))!;
  const bent = proof.inclusionPath.map((h, i) => {
    const b = fromBase64(h);
    if (i === 1) b[0] ^= 1;
    return toBase64(b);
  });
  await assert.rejects(
    check(id, { ...proof, inclusionPath: bent }),
    /inclusion proof/,
  );
  await assert.rejects(
    check(id, (await ca.proof(ids[6].serial))!),
    /leaf index/,
  );
  await assert.rejects(
    check(id, {
      ...proof,
      treeHead: proof.treeHead.replace(/\n11\n/, "\n12\n"),
    }),
    /checkpoint/,
  );
  await ca.close();
});

Deno.test("static-ct-api endpoints on ::1 let an independent monitor recompute the root and read every entry", async () => {
  const ca = await CertificateAuthority.open({
    name: "ct-ca",
    store: new MemoryCaStore(),
  });
  // 300 entries: one full tile of 256 and a partial one, at level 0 and in the data tiles.
  const serials: string[] = [];
  let last: ProvisionedIdentity | undefined;
  for (let i = 0; i < 300; i++) {
    last = await ca.provision(i === 7 ? LONG_NAME : `app-${i}`);
    serials.push(last.serial);
  }
  await using server = serveStaticCt(ca, { hostname: "::1", port: 0 });
  const out = await ctcheck("monitor", {
    url: `http://[::1]:${server.addr.port}/`,
    logVkey: ca.log.vkeys.log,
    chain: chainOf(last!, ca),
  });
  const head = out.treeHead as { size: number; root: string; origin: string };
  assert.equal(head.size, 300);
  assert.equal(head.root, toBase64(await ca.log.root()));
  assert.equal(head.origin, "stoq.trustchain/ct-ca");
  const entries = out.entries as { serial: string; dnsNames: string[] }[];
  assert.deepEqual(entries.map((e) => e.serial), serials);
  assert.deepEqual(entries[7].dnsNames, [LONG_NAME]);
  assert.equal(out.issuers, 1);
  assert.equal((out.certificate as { leafIndex: number }).leafIndex, 299);
  await ca.close();
});

Deno.test("the static-ct-api handler serves only canonical, published paths", async () => {
  const ca = await CertificateAuthority.open({
    name: "ct-ca",
    store: new MemoryCaStore(),
  });
  for (let i = 0; i < 5; i++) await ca.provision(`app-${i}`);
  const handler = staticCtHandler(ca, { prefix: "/logs/ct-ca/" });
  const get = (path: string, method = "GET") =>
    handler(new Request(`http://[::1]/logs/ct-ca/${path}`, { method }));
  const ok = async (path: string) => {
    const res = await get(path);
    assert.equal(res.status, 200, path);
    return new Uint8Array(await res.arrayBuffer());
  };
  const missing = async (path: string) => {
    const res = await get(path);
    await res.body?.cancel();
    assert.equal(res.status, 404, path);
  };

  const tile = await ok("tile/0/000.p/5");
  assert.equal(tile.length, 5 * 32);
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(
      tile.subarray(i * 32, i * 32 + 32),
      await ca.log.subtreeHash(0, i),
    );
  }
  // A partial tile of an earlier checkpoint's size is served too.
  assert.equal((await ok("tile/0/000.p/3")).length, 96);
  const data = await ok("tile/data/000.p/5");
  const entries = await ca.logEntries(0, 5);
  assert.deepEqual(data, new Uint8Array(entries.flatMap((e) => [...e])));
  assert.equal(parseTileLeaf(entries[4]).leafIndex, 4);
  const issuer = createHash("sha256").update(ca.rootDer).digest("hex");
  assert.deepEqual(await ok(`issuer/${issuer}`), ca.rootDer);
  const cp = new TextDecoder().decode(await ok("checkpoint"));
  assert.equal(cp.split("\n")[1], "5");

  for (
    const path of [
      "tile/0/000", // full tile beyond the tree
      "tile/0/000.p/6", // wider than the tree
      "tile/0/000.p/256", // not a partial width
      "tile/0/000.p/0",
      "tile/0/x000/000.p/5", // not canonical
      "tile/0/00.p/5",
      "tile/1/000.p/1", // no level-1 node yet
      "tile/6/000.p/1", // level out of range
      "tile/data/000",
      "tile/data/001.p/1",
      `issuer/${"0".repeat(64)}`,
      "nothing",
    ]
  ) await missing(path);
  const outside = await handler(new Request("http://[::1]/checkpoint"));
  await outside.body?.cancel();
  assert.equal(outside.status, 404);
  const head = await get("tile/0/000.p/5", "HEAD");
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  const post = await get("checkpoint", "POST");
  await post.body?.cancel();
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  assert.throws(() => staticCtHandler(ca, { prefix: "logs" }), TypeError);
  assert.throws(
    () => serveStaticCt(ca, { hostname: "127.0.0.1" }),
    (e: Error & { code?: string }) => e.code === "IPV4_REJECTED",
  );
  await ca.close();
});

function _indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  for (let i = 0; i + needle.length <= haystack.length; i++) {
    if (needle.every((b, j) => haystack[i + j] === b)) return i;
  }
  return -1;
}
