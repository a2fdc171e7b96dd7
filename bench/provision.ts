// Provisioning latency: key pair + CSR + policy checks + issuance (ECDSA and Falcon-512 co-signature)
// + log append + SCT + signed tree head + SQLite commit + inclusion proof, one call each.
//
//   deno run -A bench/provision.ts [iterations]
//
// Prints p50/p99 for leaves with and without the Falcon co-signature, then, as the last line,
// `provision p99: <ms> ms` for the default configuration (Falcon on). Falcon keygen (~0.5 s) happens
// once per CA at creation and is not part of the measured path.
import { CertificateAuthority, SqliteCaStore } from "../src/trustchain/mod.ts";

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
      await ca.provision(`app-${i}`);
      if (i >= warmup) times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    return { p50: percentile(times, 50), p99: percentile(times, 99) };
  } finally {
    ca.close();
    await Deno.remove(dir, { recursive: true });
  }
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
