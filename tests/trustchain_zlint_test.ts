// The RFC 5280 profile, checked by an independent linter: zlint (built by `make go-tools` from the
// Go module proxy) finds no RFC 5280 problem in the root, the leaves (including a 74-character
// name, which may not be a common name) or the precertificates, and does find the problem when a
// certificate puts such a name in the CN.
import "reflect-metadata";
import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import {
  CertificateAuthority,
  MAX_COMMON_NAME,
  MemoryCaStore,
  parseTileLeaf,
} from "../src/trustchain/mod.ts";
import { pem } from "../src/trustchain/core/keys.ts";
import { createKeyAndCsr } from "../src/trustchain/core/keys.ts";
import { goTool, LONG_NAME } from "./_trustchain.ts";

/** zlint's findings (lint name → result) for the given sources, on a PEM certificate. */
async function zlint(
  certPem: string,
  sources: string,
): Promise<Record<string, string>> {
  const dir = await Deno.makeTempDir({ prefix: "stoq_zlint_" });
  try {
    await Deno.writeTextFile(`${dir}/cert.pem`, certPem);
    const r = await goTool("zlint", [
      "-includeSources",
      sources,
      `${dir}/cert.pem`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as Record<string, { result: string }>;
    const out: Record<string, string> = {};
    for (const [lint, { result }] of Object.entries(report)) {
      out[lint] = result;
    }
    assert.ok(Object.keys(out).length > 20, "zlint ran too few lints");
    return out;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function problems(findings: Record<string, string>): string[] {
  return Object.entries(findings)
    .filter(([, r]) => r === "warn" || r === "error" || r === "fatal")
    .map(([lint, r]) => `${lint}: ${r}`);
}

Deno.test("zlint finds no RFC 5280 problem in the root, leaves and precertificates", async () => {
  const ca = await CertificateAuthority.open({
    name: "zlint-ca",
    store: new MemoryCaStore(),
    allowedNames: ["*.stoq.local", "::1"],
  });
  const { csr } = await createKeyAndCsr("from-a-csr.stoq.local");
  const p256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const ipCsr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=local.stoq.local",
    keys: await crypto.subtle.generateKey(p256, true, ["sign", "verify"]),
    signingAlgorithm: p256,
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: "local.stoq.local" },
        { type: "ip", value: "0:0:0:0:0:0:0:1" },
      ]),
    ],
  });
  const ed = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const edCsr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=ed.stoq.local",
    keys: ed,
    signingAlgorithm: { name: "Ed25519" },
    extensions: [
      new x509.SubjectAlternativeNameExtension([{
        type: "dns",
        value: "ed.stoq.local",
      }]),
    ],
  });
  const leaves = {
    short: await ca.provision("app"),
    long: await ca.provision(LONG_NAME),
    csr: await ca.issue(csr),
    ed25519: await ca.issue(edCsr.toString("pem")),
    ipv6: await ca.issue(ipCsr.toString("pem")),
  };
  const sources = "RFC5280,RFC5480,RFC6962";
  assert.deepEqual(problems(await zlint(ca.rootPem, sources)), [], "root");
  for (const [name, leaf] of Object.entries(leaves)) {
    assert.deepEqual(problems(await zlint(leaf.pem, sources)), [], name);
  }
  for (const entry of await ca.logEntries(0, 5)) {
    const pre = parseTileLeaf(entry).preCertificate!;
    assert.deepEqual(
      problems(await zlint(pem(pre, "CERTIFICATE"), sources)),
      [],
      "precertificate",
    );
  }
  // The profile itself: the long name is in a critical SAN under an empty subject.
  const long = new x509.X509Certificate(leaves.long.pem);
  assert.equal(long.subject, "");
  const san = long.extensions.find((e) => e.type === "2.5.29.17")!;
  assert.equal(san.critical, true);
  // An IPv6 subjectAltName is an iPAddress entry, in canonical form.
  const ip = new x509.X509Certificate(leaves.ipv6.pem)
    .getExtension(x509.SubjectAlternativeNameExtension)!;
  assert.deepEqual(ip.names.toJSON(), [
    { type: "dns", value: "local.stoq.local" },
    { type: "ip", value: "::1" },
  ]);
  assert.deepEqual(leaves.ipv6.names, ["local.stoq.local", "::1"]);
  const short = new x509.X509Certificate(leaves.short.pem);
  assert.equal(short.subject, "CN=app.stoq.local");
  assert.equal(
    short.extensions.find((e) => e.type === "2.5.29.17")!.critical,
    false,
  );
  await ca.close();
});

Deno.test("zlint does report a 74-character common name (the check can fail)", async () => {
  assert.ok(LONG_NAME.length > MAX_COMMON_NAME);
  const keys = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: `CN=${LONG_NAME}`,
    notBefore: new Date("2026-01-01T00:00:00Z"),
    notAfter: new Date("2026-01-02T00:00:00Z"),
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [
      new x509.SubjectAlternativeNameExtension([{
        type: "dns",
        value: LONG_NAME,
      }]),
    ],
  });
  const findings = await zlint(cert.toString("pem"), "RFC5280");
  assert.equal(findings.e_subject_common_name_max_length, "error");
});
