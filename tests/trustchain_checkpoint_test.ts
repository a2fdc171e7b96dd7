import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { StoqError, type StoqErrorCode } from "../src/errors.ts";
import {
  CertificateAuthority,
  ed25519NoteSigner,
  formatCheckpoint,
  MemoryCaStore,
  noteVkey,
  openNote,
  parseCheckpoint,
  parseVkey,
  signNote,
} from "../src/trustchain/mod.ts";
import { fromBase64, toBase64 } from "../src/trustchain/core/_bytes.ts";

const isCode = (code: StoqErrorCode) => (e: unknown) =>
  e instanceof StoqError && e.code === code;

// The reference vector of golang.org/x/mod/sumdb/note (a different implementation).
const GO_VKEY =
  "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SKEY_SEED = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT = "If you think cryptography is the answer to your problem,\n" +
  "then you don't know what your problem is.\n";
const GO_NOTE = GO_TEXT +
  "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

Deno.test("signed notes match the Go sumdb/note reference vector", async () => {
  const verifier = parseVkey(GO_VKEY);
  assert.deepEqual((await openNote(GO_NOTE, [verifier])).body, GO_TEXT);
  // Ed25519 is deterministic: signing the same text with the same seed gives the same note.
  const seed = fromBase64(GO_SKEY_SEED).subarray(1);
  const pkcs8 = new Uint8Array([
    0x30,
    0x2e,
    0x02,
    0x01,
    0x00,
    0x30,
    0x05,
    0x06,
    0x03,
    0x2b,
    0x65,
    0x70,
    0x04,
    0x22,
    0x04,
    0x20,
    ...seed,
  ]);
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, "Ed25519", false, [
    "sign",
  ]);
  const pub = fromBase64(GO_VKEY.split("+")[2]).subarray(1);
  assert.equal(noteVkey("PeterNeumann", 0x01, pub), GO_VKEY);
  assert.equal(
    await signNote(GO_TEXT, [ed25519NoteSigner("PeterNeumann", key, pub)]),
    GO_NOTE,
  );
  await assert.rejects(
    openNote(GO_NOTE.replace("problem,", "problem;"), [verifier]),
    isCode("PROOF_INVALID"),
  );
});

Deno.test("checkpoints have the C2SP layout, round-trip, and carry an RFC 6962 and a Falcon signature", async () => {
  const ca = await CertificateAuthority.open({
    name: "cp-ca",
    store: new MemoryCaStore(),
  });
  for (let i = 0; i < 5; i++) await ca.provision(`app-${i}`);
  const note = await ca.checkpoint();
  const lines = note.split("\n");
  assert.equal(lines[0], "stoq.trustchain/cp-ca");
  assert.equal(lines[1], "5");
  assert.equal(lines[2], toBase64(await ca.log.root()));
  assert.equal(lines[3], "");
  assert.match(lines[4], /^\u2014 stoq\.trustchain\/cp-ca [A-Za-z0-9+/=]+$/);
  assert.match(lines[5], /^\u2014 stoq\.trustchain\/cp-ca [A-Za-z0-9+/=]+$/);
  assert.equal(lines[6], "");
  assert.equal(lines.length, 7);

  // Key IDs computed independently: static-ct-api hashes the log ID (SHA-256 of the DER
  // SubjectPublicKeyInfo) for type 0x05; the Falcon key is 0xff, its identifier, then the key.
  const log = parseVkey(ca.log.vkeys.log);
  const falcon = parseVkey(ca.log.vkeys.falcon);
  const spki = fromBase64(ca.log.vkeys.log.split("+").slice(2).join("+"));
  assert.equal(spki[0], 0x05);
  assert.deepEqual(spki.subarray(1), ca.log.publicKey);
  const logId = createHash("sha256").update(spki.subarray(1)).digest();
  assert.equal(toBase64(new Uint8Array(logId)), ca.log.logId);
  const expected = createHash("sha256").update("stoq.trustchain/cp-ca\n")
    .update(new Uint8Array([0x05])).update(logId).digest().subarray(0, 4);
  assert.deepEqual(log.keyHash, new Uint8Array(expected));
  assert.deepEqual(
    fromBase64(lines[4].split(" ")[2]).subarray(0, 4),
    log.keyHash,
  );
  const falconKey = fromBase64(
    ca.log.vkeys.falcon.split("+").slice(2).join("+"),
  );
  assert.equal(falconKey[0], 0xff);
  assert.equal(
    new TextDecoder().decode(falconKey.subarray(1, 27)),
    "stoq.trustchain/falcon-512",
  );
  assert.deepEqual(falconKey.subarray(27), ca.falconPublicKey);
  const falconId = createHash("sha256").update("stoq.trustchain/cp-ca\n")
    .update(falconKey).digest().subarray(0, 4);
  assert.deepEqual(falcon.keyHash, new Uint8Array(falconId));
  assert.deepEqual(
    fromBase64(lines[5].split(" ")[2]).subarray(0, 4),
    falcon.keyHash,
  );

  const opened = await openNote(note, [log, falcon]);
  assert.deepEqual(opened.verifiedBy, [
    "stoq.trustchain/cp-ca",
    "stoq.trustchain/cp-ca",
  ]);
  const cp = parseCheckpoint(opened.body);
  assert.equal(formatCheckpoint(cp), opened.body);
  assert.equal(cp.treeSize, 5);
  // Each key alone verifies its own line and skips the other.
  assert.equal((await openNote(note, [falcon])).verifiedBy.length, 1);
  assert.equal((await openNote(note, [log])).verifiedBy.length, 1);
  // A 0xff vkey without STOQ's identifier is refused rather than misread.
  assert.throws(
    () =>
      parseVkey(
        noteVkey("k", 0x01, new Uint8Array(32)).replace(/\+A/, "+/"),
      ),
    isCode("BUNDLE_INVALID"),
  );
});

Deno.test("a tampered checkpoint byte or flipped Falcon bit fails verification", async () => {
  const ca = await CertificateAuthority.open({
    name: "cp-ca",
    store: new MemoryCaStore(),
  });
  await ca.provision("app");
  const note = await ca.checkpoint();
  const ed = parseVkey(ca.log.vkeys.log);
  const falcon = parseVkey(ca.log.vkeys.falcon);
  const lines = note.split("\n");
  lines[1] = "2";
  await assert.rejects(
    openNote(lines.join("\n"), [ed]),
    isCode("PROOF_INVALID"),
  );
  await assert.rejects(
    openNote(lines.join("\n"), [falcon]),
    isCode("PROOF_INVALID"),
  );

  const flipped = note.split("\n");
  const sig = fromBase64(flipped[5].split(" ")[2]);
  sig[40] ^= 0x01;
  flipped[5] = `\u2014 stoq.trustchain/cp-ca ${toBase64(sig)}`;
  await assert.rejects(
    openNote(flipped.join("\n"), [falcon]),
    isCode("PROOF_INVALID"),
  );
  // The RFC 6962 line is intact, but a verifier that knows both keys must reject the bad Falcon line.
  await assert.rejects(
    openNote(flipped.join("\n"), [ed, falcon]),
    isCode("PROOF_INVALID"),
  );
  // Unknown keys only: nothing verifies.
  await assert.rejects(
    openNote(note, [parseVkey(GO_VKEY)]),
    isCode("PROOF_INVALID"),
  );
  await assert.rejects(
    openNote("no blank line\n", [ed]),
    isCode("PROOF_INVALID"),
  );
});

Deno.test("malformed vkeys are refused", () => {
  assert.throws(() => parseVkey("nope"), isCode("BUNDLE_INVALID"));
  assert.throws(
    () => parseVkey(GO_VKEY.replace("c74f20a3", "c74f20a4")),
    isCode("BUNDLE_INVALID"),
  );
});
