/**
 * Provisioning latency, `deno task bench:provision`: what an app on another machine pays to be
 * provisioned, without the network. Each run makes a P-256 key pair and a CSR for one name; the
 * CA parses and verifies the CSR, applies its policy, and runs the RFC 6962 precertificate flow:
 * the Falcon-512 co-signature (by default), the precertificate (poison extension) signed and
 * logged, the SCT signed, the new tree head signed, the final certificate signed with the SCT
 * embedded, everything committed to SQLite in one transaction, and the inclusion proof returned.
 *
 *   deno run -A bench/provision.ts [iterations]
 *
 * Prints p50/p99 with and without the Falcon co-signature on certificates, and which PQClean
 * build signs; the last line is `provision p99: <ms> ms` for the default configuration (Falcon
 * on). Key generation for the CA happens once per CA and is not measured.
 *
 * @module
 */

import { createKeyAndCsr } from "../src/trustchain/core/keys.ts";
import {
  CertificateAuthority,
  FalconSigner,
  generateFalconKeyPair,
  SqliteCaStore,
} from "../src/trustchain/mod.ts";

const iterations = Number(Deno.args[0] ?? 300);
const warmup = 30;

function percentile(sorted: number[], p: number): number {
  return sorted[
    Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)
  ];
}

async function run(
  falconCertificates: boolean,
): Promise<{ p50: number; p99: number }> {
  const dir = await Deno.makeTempDir({ prefix: "stoq_bench_" });
  const ca = await CertificateAuthority.open({
    name: "bench-ca",
    store: new SqliteCaStore(`${dir}/ca.db`),
    falconCertificates,
  });
  try {
    const times: number[] = [];
    for (let i = 0; i < warmup + iterations; i++) {
      const start = performance.now();
      const { csr } = await createKeyAndCsr(`app-${i}.${ca.domain}`);
      const issued = await ca.issue(csr);
      if (issued.proof.leafIndex !== i) {
        throw new Error("the log lost an entry");
      }
      if (i >= warmup) times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    return { p50: percentile(times, 50), p99: percentile(times, 99) };
  } finally {
    ca.close();
    await Deno.remove(dir, { recursive: true });
  }
}

{
  using signer = FalconSigner.open(generateFalconKeyPair().secretKey);
  console.log(`Falcon-512 signer: PQClean ${signer.variant} build`);
}
const plain = await run(false);
console.log(
  `without Falcon co-signature: p50 ${plain.p50.toFixed(2)} ms, p99 ${
    plain.p99.toFixed(2)
  } ms`,
);
const full = await run(true);
console.log(
  `with Falcon co-signature:    p50 ${full.p50.toFixed(2)} ms, p99 ${
    full.p99.toFixed(2)
  } ms`,
);
console.log(`provision p99: ${full.p99.toFixed(2)} ms`);
