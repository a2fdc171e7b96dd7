// The native Falcon-512 signer (PQClean, key expanded once) against an independent
// implementation: @noble/post-quantum verifies what it signs, and it verifies what noble signs.
import assert from "node:assert/strict";
import { falcon512 } from "@noble/post-quantum/falcon.js";
import { StoqError } from "../src/errors.ts";
import {
  CertificateAuthority,
  falconSign,
  FalconSigner,
  generateFalconKeyPair,
  MemoryCaStore,
  type RandomSource,
  verifyCertificateFalcon,
} from "../src/trustchain/mod.ts";
import { openFalconLibrary } from "../ffi/falcon.ts";

/** A deterministic random source (a counter), for reproducibility checks only. */
function counting(start = 0): RandomSource {
  let n = start;
  return (bytes) => {
    for (let i = 0; i < bytes.length; i++) bytes[i] = (n++ * 131 + 7) & 0xff;
    return bytes;
  };
}

const hasAvx2 = openFalconLibrary().stoq_falcon_variant() === 2;

Deno.test("native Falcon-512 signatures verify with @noble/post-quantum, and noble's keys sign natively", () => {
  const keys = generateFalconKeyPair();
  using signer = FalconSigner.open(keys.secretKey);
  assert.equal(signer.variant, hasAvx2 ? "avx2" : "portable");
  for (let i = 0; i < 20; i++) {
    const msg = crypto.getRandomValues(new Uint8Array(1 + i * 37));
    const sig = signer.sign(msg);
    assert.ok(sig.length <= 752 && sig[0] === 0x39);
    assert.ok(falcon512.verify(sig, msg, keys.publicKey), `message ${i}`);
    const bad = msg.slice();
    bad[0] ^= 1;
    assert.ok(!falcon512.verify(sig, bad, keys.publicKey));
  }
  // A key pair noble generated (the format both sides share) signs natively.
  const noble = falcon512.keygen();
  const msg = new TextEncoder().encode("cross-check");
  assert.ok(
    falcon512.verify(falconSign(msg, noble.secretKey), msg, noble.publicKey),
  );
});

Deno.test("the portable and AVX2 builds make identical keys and signatures from the same randomness", () => {
  const portable = generateFalconKeyPair(counting(), { variant: "portable" });
  assert.deepEqual(generateFalconKeyPair(counting()), portable);
  using p = FalconSigner.open(portable.secretKey, { variant: "portable" });
  const msg = new TextEncoder().encode("same randomness, same signature");
  const sig = p.sign(msg, counting(9));
  assert.deepEqual(p.sign(msg, counting(9)), sig);
  assert.notDeepEqual(p.sign(msg, counting(10)), sig);
  assert.ok(falcon512.verify(sig, msg, portable.publicKey));
  if (hasAvx2) {
    assert.deepEqual(
      generateFalconKeyPair(counting(), { variant: "avx2" }),
      portable,
    );
    using a = FalconSigner.open(portable.secretKey, { variant: "avx2" });
    assert.equal(a.variant, "avx2");
    assert.deepEqual(a.sign(msg, counting(9)), sig);
  } else {
    assert.throws(
      () => FalconSigner.open(portable.secretKey, { variant: "avx2" }),
      (e: unknown) => e instanceof StoqError && e.code === "INVALID_ARGUMENT",
    );
  }
});

Deno.test("a Falcon signer refuses malformed keys and use after close", () => {
  const keys = generateFalconKeyPair();
  assert.throws(() => FalconSigner.open(keys.publicKey), TypeError);
  const broken = keys.secretKey.slice();
  broken[0] = 0x58; // wrong header byte
  assert.throws(() => FalconSigner.open(broken), TypeError);
  assert.throws(
    () =>
      FalconSigner.open(keys.secretKey, {
        variant: "fast" as unknown as "auto",
      }),
    TypeError,
  );
  const signer = FalconSigner.open(keys.secretKey);
  signer.close();
  signer.close(); // idempotent
  assert.throws(
    () => signer.sign(new Uint8Array([1])),
    (e: unknown) => e instanceof StoqError && e.code === "CLOSED",
  );
});

Deno.test("a CA is a function of its clock and random source: same inputs, same certificates", async () => {
  const now = () => new Date("2026-03-01T12:00:00Z");
  const open = () =>
    CertificateAuthority.open({
      name: "det-ca",
      store: new MemoryCaStore(),
      now,
      random: counting(),
    });
  const [a, b] = [await open(), await open()];
  assert.deepEqual(a.rootDer, b.rootDer);
  for (const app of ["one", "two"]) {
    const [x, y] = [await a.provision(app), await b.provision(app)];
    assert.deepEqual(x.der, y.der);
    assert.equal(x.key, y.key);
    assert.deepEqual(x.proof, y.proof);
    assert.equal(verifyCertificateFalcon(x.der, a.falconPublicKey), "valid");
  }
  assert.equal(await a.checkpoint(), await b.checkpoint());
  const c = await CertificateAuthority.open({
    name: "det-ca",
    store: new MemoryCaStore(),
    now,
    random: counting(1),
  });
  assert.notDeepEqual(c.rootDer, a.rootDer);
  await a.close();
  await b.close();
  await c.close();
});
