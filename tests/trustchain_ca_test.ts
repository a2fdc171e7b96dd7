import "reflect-metadata";
import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import { StoqError } from "../src/errors.ts";
import {
  CertificateAuthority,
  type CertificateAuthorityOptions,
  certificateLogLeaf,
  MemoryCaStore,
  SqliteCaStore,
  verifyCertificateFalcon,
  verifyStatus,
  verifyTransparencyProof,
} from "../src/trustchain/mod.ts";

const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const NOW = new Date("2026-03-01T12:00:00Z");

async function withCa(
  fn: (
    ca: CertificateAuthority,
    dir: string,
    store: SqliteCaStore,
  ) => Promise<void>,
  opts: Partial<CertificateAuthorityOptions> = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "stoq_ca_" });
  const store = new SqliteCaStore(`${dir}/ca.db`);
  const ca = await CertificateAuthority.open({
    name: "test-ca",
    store,
    ...opts,
  });
  try {
    await fn(ca, dir, store);
  } finally {
    await ca.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function openssl(
  ...args: string[]
): Promise<{ code: number; out: string }> {
  const { code, stdout, stderr } = await new Deno.Command("openssl", { args })
    .output();
  const dec = new TextDecoder();
  return { code, out: dec.decode(stdout) + dec.decode(stderr) };
}

async function csrFor(
  keys: CryptoKeyPair,
  names: x509.JsonGeneralName[],
  alg: Algorithm | EcdsaParams = EC,
): Promise<Uint8Array> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=requester",
    keys,
    signingAlgorithm: alg,
    extensions: names.length
      ? [new x509.SubjectAlternativeNameExtension(names)]
      : [],
  });
  return new Uint8Array(csr.rawData);
}

/** `n` distinct allowed DNS names. */
function names(n: number): x509.JsonGeneralName[] {
  return Array.from({ length: n }, (_, i) => ({
    type: "dns",
    value: `host-${i}.stoq.local`,
  }));
}

async function ecKeys(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(EC, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
}

Deno.test("issued chains verify with openssl for server and client purposes", async () => {
  await withCa(async (ca, dir) => {
    const id = await ca.provision("my-app");
    await Deno.writeTextFile(`${dir}/root.pem`, ca.rootPem);
    await Deno.writeTextFile(`${dir}/leaf.pem`, id.pem);
    for (const purpose of ["sslserver", "sslclient"]) {
      const r = await openssl(
        "verify",
        "-CAfile",
        `${dir}/root.pem`,
        "-purpose",
        purpose,
        `${dir}/leaf.pem`,
      );
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /leaf\.pem: OK/);
    }
    const text =
      (await openssl("x509", "-in", `${dir}/leaf.pem`, "-noout", "-text")).out;
    assert.match(text, /DNS:my-app\.stoq\.local/);
    assert.match(
      text,
      /TLS Web Server Authentication, TLS Web Client Authentication/,
    );
    assert.match(text, /CA:FALSE/);
    assert.match(text, /Digital Signature/);
    assert.match(text, /Authority Key Identifier/);
    assert.match(text, /Subject Key Identifier/);
    assert.doesNotMatch(text, /Negative/);
    const rootText =
      (await openssl("x509", "-in", `${dir}/root.pem`, "-noout", "-text")).out;
    assert.match(rootText, /CA:TRUE/);
    // The PKCS#8 key belongs to the certificate.
    await Deno.writeTextFile(`${dir}/key.pem`, id.key);
    const pubFromKey =
      (await openssl("pkey", "-in", `${dir}/key.pem`, "-pubout")).out;
    const pubFromCert =
      (await openssl("x509", "-in", `${dir}/leaf.pem`, "-noout", "-pubkey"))
        .out;
    assert.equal(pubFromKey, pubFromCert);
    assert.equal(id.cert, `${id.pem}\n${ca.rootPem}\n`);
  });
});

Deno.test("leaves are short-lived with random positive 128-bit serials under a fixed clock", async () => {
  await withCa(async (ca) => {
    const a = await ca.provision("a");
    const b = await ca.provision("b");
    assert.equal(a.notBefore.getTime(), NOW.getTime());
    assert.equal(a.notAfter.getTime() - a.notBefore.getTime(), 24 * 3600_000);
    assert.notEqual(a.serial, b.serial);
    assert.ok(a.serial.length >= 24 && a.serial.length <= 32, a.serial);
    await verifyTransparencyProof(
      certificateLogLeaf(b.der, ca.rootDer),
      b.proof,
      ca.log.verifiers,
    );
    assert.equal(b.proof.leafIndex, 1);
  }, { now: () => NOW });
});

Deno.test("each bad CSR is refused with its code and leaves the CA unchanged", async () => {
  await withCa(async (ca, _dir, store) => {
    await ca.provision("seed");
    const snapshot = async () => ({
      counts: await store.counts(),
      serials: (await store.certificates(0, 1e9)).map((c) => c.serial),
      size: ca.log.size,
      head: ca.treeHead,
    });
    const before = await snapshot();

    const rsa = await crypto.subtle.generateKey(
      {
        name: "RSASSA-PKCS1-v1_5",
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: "SHA-256",
      },
      true,
      ["sign", "verify"],
    ) as CryptoKeyPair;
    const good = await csrFor(await ecKeys(), [{
      type: "dns",
      value: "ok.stoq.local",
    }]);
    const corrupted = good.slice();
    corrupted[corrupted.length - 2] ^= 0x55; // inside the ECDSA signature's s integer
    const cases: [string, string | Uint8Array, number | undefined][] = [
      ["CSR_MALFORMED", crypto.getRandomValues(new Uint8Array(200)), undefined],
      [
        "CSR_MALFORMED",
        "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----",
        undefined,
      ],
      ["CSR_BAD_SIGNATURE", corrupted, undefined],
      [
        "KEY_UNSUPPORTED",
        await csrFor(rsa, [{ type: "dns", value: "rsa.stoq.local" }], {
          name: "RSASSA-PKCS1-v1_5",
          hash: "SHA-256",
        }),
        undefined,
      ],
      [
        "SAN_IPV4",
        await csrFor(await ecKeys(), [{ type: "ip", value: "192.0.2.7" }]),
        undefined,
      ],
      [
        "SAN_IPV4",
        await csrFor(await ecKeys(), [{ type: "dns", value: "192.0.2.7" }]),
        undefined,
      ],
      [
        "SAN_IPV4",
        await csrFor(await ecKeys(), [{
          type: "ip",
          value: "::ffff:c000:207", // ::ffff:192.0.2.7 (the generator misreads the dotted form)
        }]),
        undefined,
      ],
      [
        "TOO_MANY_SANS",
        await csrFor(await ecKeys(), names(101)),
        undefined,
      ],
      ["CSR_TOO_LARGE", await csrFor(await ecKeys(), names(1000)), undefined],
      ["CSR_TOO_LARGE", "x".repeat(10_000_000), undefined],
      [
        "NAME_NOT_ALLOWED",
        await csrFor(await ecKeys(), [{
          type: "dns",
          value: "evil.example.com",
        }]),
        undefined,
      ],
      [
        "NAME_NOT_ALLOWED",
        await csrFor(await ecKeys(), [{ type: "dns", value: "stoq.local" }]),
        undefined,
      ],
      [
        "NAME_NOT_ALLOWED", // an IPv6 address the CA does not list
        await csrFor(await ecKeys(), [{ type: "ip", value: "2001:db8::1" }]),
        undefined,
      ],
      ["LIFETIME_TOO_LONG", good, 8 * 24 * 3600_000],
    ];
    for (const [code, csr, lifetimeMs] of cases) {
      await assert.rejects(
        ca.issue(csr, lifetimeMs ? { lifetimeMs } : {}),
        (e: unknown) => e instanceof StoqError && e.code === code,
        `expected ${code}`,
      );
      assert.deepEqual(await snapshot(), before, `state changed after ${code}`);
    }
    // The untouched CSR is fine, so the refusals above were about what was changed.
    await ca.issue(good);
    assert.equal(ca.log.size, before.size + 1);
  });
});

Deno.test("CSR limits are the CA's own: size and SAN count with their codes, before any name check", async () => {
  const keys = await ecKeys();
  const hundred = await csrFor(keys, names(100));
  const many = await csrFor(keys, names(10_000));
  assert.ok(many.length > 200_000, `${many.length}`);
  await withCa(async (ca) => {
    assert.deepEqual(ca.limits, { maxCsrBytes: 16384, maxSans: 100 });
    // At the limits: issued, with every name.
    assert.equal((await ca.issue(hundred)).names.length, 100);
    // A valid 10,000-name CSR is too large by default, and too many names once size allows it.
    await assert.rejects(
      ca.issue(many),
      (e: unknown) => e instanceof StoqError && e.code === "CSR_TOO_LARGE",
    );
  });
  await withCa(async (ca) => {
    await assert.rejects(
      ca.issue(many),
      (e: unknown) => e instanceof StoqError && e.code === "TOO_MANY_SANS",
    );
    const pem = x509.PemConverter.encode(
      many.buffer as ArrayBuffer,
      "CERTIFICATE REQUEST",
    );
    await assert.rejects(
      ca.issue(pem),
      (e: unknown) => e instanceof StoqError && e.code === "TOO_MANY_SANS",
    );
  }, { maxCsrBytes: 1 << 20 });
  await withCa(async (ca) => {
    await assert.rejects(
      ca.issue(await csrFor(keys, names(3))),
      (e: unknown) => e instanceof StoqError && e.code === "TOO_MANY_SANS",
    );
    await assert.rejects(
      ca.issue(hundred),
      (e: unknown) => e instanceof StoqError && e.code === "CSR_TOO_LARGE",
    );
  }, { maxSans: 2, maxCsrBytes: 2048 });
});

Deno.test("Ed25519 CSRs are accepted", async () => {
  await withCa(async (ca) => {
    const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
      "sign",
      "verify",
    ]) as CryptoKeyPair;
    const csr = await csrFor(keys, [{ type: "dns", value: "ed.stoq.local" }], {
      name: "Ed25519",
    });
    const issued = await ca.issue(csr);
    assert.deepEqual(issued.names, ["ed.stoq.local"]);
  });
});

Deno.test("revocation shows in signed status and in a CRL openssl verifies", async () => {
  await withCa(async (ca, dir) => {
    const id = await ca.provision("app");
    const good = await ca.status(id.serial);
    assert.equal(good.status, "good");
    assert.ok(await verifyStatus(good, ca.rootDer));
    await ca.revoke(id.serial, "keyCompromise");
    const revoked = await ca.status(id.serial);
    assert.equal(revoked.status, "revoked");
    assert.equal(revoked.reason, "keyCompromise");
    assert.ok(await verifyStatus(revoked, ca.rootDer));
    assert.ok(
      !(await verifyStatus({ ...revoked, status: "good" }, ca.rootDer)),
    );
    await assert.rejects(ca.revoke("abcdef"), RangeError);
    await Deno.writeTextFile(`${dir}/root.pem`, ca.rootPem);
    await Deno.writeTextFile(`${dir}/crl.pem`, await ca.revocationList());
    const r = await openssl(
      "crl",
      "-in",
      `${dir}/crl.pem`,
      "-CAfile",
      `${dir}/root.pem`,
      "-noout",
      "-text",
    );
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /verify OK/);
    assert.match(r.out.toLowerCase(), new RegExp(id.serial.slice(-8)));
    assert.match(r.out, /Key Compromise/);
  });
});

Deno.test("certificates carry a Falcon co-signature that a flipped bit breaks", async () => {
  await withCa(async (ca) => {
    const id = await ca.provision("pq");
    assert.equal(verifyCertificateFalcon(id.der, ca.falconPublicKey), "valid");
    const cert = new x509.X509Certificate(new Uint8Array(id.der));
    const ext = cert.extensions.find((e) =>
      e.critical === false && e.value.byteLength > 600
    )!;
    const sig = new Uint8Array(ext.value).slice(-40);
    // Locate the co-signature's tail in the DER and flip one bit in it.
    let at = -1;
    for (let i = 0; i + sig.length <= id.der.length && at < 0; i++) {
      if (sig.every((b, j) => id.der[i + j] === b)) at = i;
    }
    assert.ok(at > 0);
    const bad = id.der.slice();
    bad[at + 10] ^= 0x01;
    assert.equal(verifyCertificateFalcon(bad, ca.falconPublicKey), "invalid");
    const other = new Uint8Array(ca.falconPublicKey);
    other[5] ^= 1;
    assert.equal(verifyCertificateFalcon(id.der, other), "invalid");
  });
});

Deno.test("falconCertificates: false leaves the extension out", async () => {
  await withCa(async (ca) => {
    const id = await ca.provision("plain");
    assert.equal(verifyCertificateFalcon(id.der, ca.falconPublicKey), "absent");
  }, { falconCertificates: false });
});

Deno.test("bad CA options are refused with a TypeError or RangeError", async () => {
  await assert.rejects(
    CertificateAuthority.open({ name: "has space", store: undefined as never }),
    TypeError,
  );
  await withCa(async (ca) => {
    await assert.rejects(
      ca.issue(new Uint8Array(1), { lifetimeMs: -1 }),
      RangeError,
    );
  });
  const store = new MemoryCaStore();
  for (
    const [bad, type] of [
      [{ maxCsrBytes: 0 }, RangeError],
      [{ maxSans: 1.5 }, RangeError],
      [{ verify: "everything" as "full" }, TypeError],
      [{ passphrase: "" }, TypeError],
      [{ passphrase: "a", keyFile: "/dev/null" }, TypeError],
    ] as const
  ) {
    await assert.rejects(
      CertificateAuthority.open({ name: "opts", store, ...bad }),
      type,
      JSON.stringify(bad),
    );
  }
  // Nothing was created by the refused opens.
  assert.equal(await store.loadIdentity(), undefined);
});
