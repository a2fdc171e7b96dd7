/**
 * Provisioning latency, `deno task bench:provision [--store postgres] [iterations]`: what an app
 * on another machine pays to be provisioned, without the network. Each run makes a P-256 key pair
 * and a CSR for one name; the CA parses and verifies the CSR, applies its policy, and runs the
 * RFC 6962 precertificate flow: the Falcon-512 co-signature (by default), the precertificate
 * (poison extension) signed, the leaf index taken and entry and certificate record committed in
 * the store's sequencing transaction (SCT signed inside it), the entry integrated into the tree
 * and a tree head signed over the committed state, the final certificate signed with the SCT
 * embedded, and the inclusion proof read from the stored tree.
 *
 * Prints p50/p99 for SQLite with and without the Falcon co-signature on certificates and which
 * PQClean build signs; with `--store postgres`, the same for PostgreSQL (the throw-away cluster
 * `make pg-start` runs, its URL in STOQ_BENCH_POSTGRES) and the throughput of 8 concurrent
 * issuances on each store. The last line is `provision p99: <ms> ms` for the default
 * configuration (SQLite, Falcon on). Key generation for the CA happens once per CA and is not
 * measured.
 *
 * @module
 */

import postgres from "npm:postgres@3.4.9";
import { createKeyAndCsr } from "../src/trustchain/core/keys.ts";
import {
  type CaStore,
  CertificateAuthority,
  FalconSigner,
  generateFalconKeyPair,
  PostgresCaStore,
  SqliteCaStore,
} from "../src/trustchain/mod.ts";

const args = [...Deno.args];
const storeAt = args.indexOf("--store");
const stores = storeAt >= 0 ? args.splice(storeAt, 2)[1] : "sqlite";
if (stores !== "sqlite" && stores !== "postgres") {
  throw new TypeError(
    `Usage: provision.ts [--store sqlite|postgres] [iterations]: unknown store ${stores}`,
  );
}
const iterations = Number(args[0] ?? 300);
const warmup = 30;

function percentile(sorted: number[], p: number): number {
  return sorted[
    Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)
  ];
}

/** A store for one run, and how to get rid of it afterwards. */
interface BenchStore {
  store: CaStore;
  dispose(): Promise<void>;
}

async function sqliteStore(): Promise<BenchStore> {
  const dir = await Deno.makeTempDir({ prefix: "stoq_bench_" });
  return {
    store: new SqliteCaStore(`${dir}/ca.db`),
    dispose: () => Deno.remove(dir, { recursive: true }),
  };
}

async function postgresStore(): Promise<BenchStore> {
  const base = Deno.env.get("STOQ_BENCH_POSTGRES");
  if (!base) {
    throw new Error(
      "--store postgres needs STOQ_BENCH_POSTGRES: run it as `deno task bench:provision --store postgres` (make starts a throw-away cluster)",
    );
  }
  const u = new URL(base);
  const admin = () =>
    postgres({
      path: `${u.searchParams.get("host")}/.s.PGSQL.${
        u.searchParams.get("port")
      }`,
      user: u.username,
      database: u.pathname.slice(1),
      max: 1,
      onnotice: () => {},
    });
  const name = `stoq_bench_${crypto.randomUUID().replaceAll("-", "")}`;
  const sql = admin();
  await sql.unsafe(`CREATE DATABASE ${name}`);
  await sql.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    store: await PostgresCaStore.connect(url.href, { maxConnections: 8 }),
    dispose: async () => {
      const drop = admin();
      await drop.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await drop.end();
    },
  };
}

interface Figures {
  p50: number;
  p99: number;
  /** Issuances per second with 8 in flight. */
  concurrent?: number;
}

async function run(
  make: () => Promise<BenchStore>,
  falconCertificates: boolean,
  concurrency: boolean,
): Promise<Figures> {
  const { store, dispose } = await make();
  const ca = await CertificateAuthority.open({
    name: "bench-ca",
    store,
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
    const figures: Figures = {
      p50: percentile(times, 50),
      p99: percentile(times, 99),
    };
    if (concurrency) {
      let next = 0;
      const start = performance.now();
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (next < iterations) {
          next++;
          const { csr } = await createKeyAndCsr(`c-${next}.${ca.domain}`);
          await ca.issue(csr);
        }
      }));
      figures.concurrent = iterations / ((performance.now() - start) / 1000);
    }
    return figures;
  } finally {
    await ca.close();
    await dispose();
  }
}

function line(label: string, f: Figures): string {
  return `${label.padEnd(34)} p50 ${f.p50.toFixed(2)} ms, p99 ${
    f.p99.toFixed(2)
  } ms${
    f.concurrent === undefined
      ? ""
      : `, ${f.concurrent.toFixed(0)} issuances/s with 8 in flight`
  }`;
}

{
  using signer = FalconSigner.open(generateFalconKeyPair().secretKey);
  console.log(`Falcon-512 signer: PQClean ${signer.variant} build`);
}
const both = stores === "postgres";
console.log(
  line(
    "SQLite, without Falcon co-signature",
    await run(sqliteStore, false, false),
  ),
);
const full = await run(sqliteStore, true, both);
console.log(line("SQLite, with Falcon co-signature", full));
if (both) {
  console.log(
    line(
      "PostgreSQL, with Falcon co-signature",
      await run(postgresStore, true, true),
    ),
  );
}
console.log(`provision p99: ${full.p99.toFixed(2)} ms`);
