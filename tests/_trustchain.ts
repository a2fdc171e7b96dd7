/**
 * Helpers shared by the TrustChain tests.
 *
 * @module
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import {
  type CaStore,
  CertificateAuthority,
  MemoryCaStore,
  openNote,
  parseCheckpoint,
  parseTileLeaf,
  type SignedTrustBundle,
  SYSTEM_RANDOM,
  tileLeaf,
  timestampedEntry,
  type TrustBundle,
  verifyConsistency,
} from "../src/trustchain/mod.ts";
import {
  decodeIdentityRecord,
  loadIdentity,
} from "../src/trustchain/core/identity.ts";
import { certificateMac, entryMac } from "../src/trustchain/core/integrity.ts";

/** A legal 74-character DNS name: longer than RFC 5280 allows a common name to be. */
export const LONG_NAME = `${"a".repeat(30)}.${"b".repeat(32)}.stoq.local`;
if (LONG_NAME.length !== 74) {
  throw new Error("LONG_NAME must have 74 characters");
}

/** Opens one in-memory CA per name. */
export function openCas(...names: string[]): Promise<CertificateAuthority[]> {
  return Promise.all(
    names.map((name) =>
      CertificateAuthority.open({ name, store: new MemoryCaStore() })
    ),
  );
}

/** `bundle` endorsed by each of `signers`. */
export async function signed(
  bundle: TrustBundle,
  signers: CertificateAuthority[],
): Promise<SignedTrustBundle> {
  return {
    bundle,
    signatures: await Promise.all(signers.map((c) => c.endorse(bundle))),
  };
}

/** What an external tool printed. */
export interface ToolResult {
  /** Exit status. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/**
 * Runs one of the Go tools `make go-tools` builds into build/bin (zlint, ctcheck), feeding
 * `stdin` when given.
 */
export async function goTool(
  name: "zlint" | "ctcheck",
  args: string[],
  stdin?: string,
): Promise<ToolResult> {
  const path = new URL(`../build/bin/${name}`, import.meta.url).pathname;
  try {
    await Deno.stat(path);
  } catch {
    throw new Error(
      `${path} is missing: run \`make go-tools\` (make test does)`,
    );
  }
  const child = new Deno.Command(path, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** Runs `ctcheck <command>` on a JSON request; returns the parsed answer or throws its error. */
export async function ctcheck(
  command: "sct" | "inclusion" | "monitor",
  request: unknown,
): Promise<Record<string, unknown>> {
  const r = await goTool("ctcheck", [command], JSON.stringify(request));
  if (r.code !== 0) {
    throw new Error(r.stderr.trim() || `ctcheck exited ${r.code}`);
  }
  return JSON.parse(r.stdout);
}

/**
 * The throw-away PostgreSQL cluster `make pg-start` runs (`make test` starts it and sets
 * STOQ_TEST_POSTGRES); throws with what to do when it is not running.
 */
export function postgresUrl(): string {
  const fromEnv = Deno.env.get("STOQ_TEST_POSTGRES");
  if (fromEnv) return fromEnv;
  try {
    return Deno.readTextFileSync(
      new URL("../build/pg/url", import.meta.url),
    ).trim();
  } catch {
    throw new Error(
      "No PostgreSQL for the store tests: run `make pg-start` (make test starts and stops it)",
    );
  }
}

/** A new, empty database in the test cluster, dropped (with its connections) when disposed. */
export async function freshDatabase(): Promise<
  { url: string; name: string } & AsyncDisposable
> {
  const base = new URL(postgresUrl());
  const name = `stoq_${crypto.randomUUID().replaceAll("-", "")}`;
  await using admin = adminSql(base.href);
  await admin.sql.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(base.href);
  url.pathname = `/${name}`;
  return {
    url: url.href,
    name,
    [Symbol.asyncDispose]: async () => {
      await using dropper = adminSql(base.href);
      await dropper.sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

/** A raw connection to a test database (as an attacker or a bad disk would write to it). */
export function adminSql(url: string): { sql: postgres.Sql } & AsyncDisposable {
  const u = new URL(url);
  const sql = postgres({
    path: `${u.searchParams.get("host")}/.s.PGSQL.${
      u.searchParams.get("port")
    }`,
    user: decodeURIComponent(u.username),
    database: u.pathname.slice(1),
    max: 1,
    onnotice: () => {},
  });
  return { sql, [Symbol.asyncDispose]: () => sql.end({ timeout: 5 }) };
}

/**
 * Runs `tests/fixtures/trustchain_issue_loop.ts` against a store URL and returns the child; its
 * stdout carries one JSON line per issued certificate.
 */
export function issueLoop(
  store: string,
  count: number,
  extra: string[] = [],
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    stdin: extra.includes("--wait-stdin") ? "piped" : "null",
    args: [
      "run",
      "-A",
      new URL("./fixtures/trustchain_issue_loop.ts", import.meta.url).pathname,
      store,
      String(count),
      ...extra,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Reads a child's stdout line by line. */
export async function* lines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
    }
  }
  if (buffered) yield buffered;
}

/**
 * After a SIGKILL: every reported issuance is committed (at most the ones in flight more), and the
 * CA opens, audits clean, and proves consistency from the first head to the last.
 */
export async function checkAfterKill(
  store: CaStore,
  reopen: () => Promise<CertificateAuthority>,
  seen: number,
  inFlight = 1,
): Promise<void> {
  const ca = await reopen();
  try {
    const counts = await store.counts();
    assert.ok(
      counts.certificates >= seen && counts.certificates <= seen + inFlight,
      `${counts.certificates} certificates, ${seen} reported`,
    );
    assert.equal(counts.entries, counts.certificates);
    assert.equal(ca.log.size, counts.entries);
    const heads = await store.treeHeads();
    const last = parseCheckpoint(
      (await openNote(heads.at(-1)!.note, ca.log.verifiers)).body,
    );
    assert.equal(last.treeSize, counts.entries);
    assert.deepEqual(last.rootHash, await ca.log.root());
    const first = parseCheckpoint(
      (await openNote(heads[0].note, ca.log.verifiers)).body,
    );
    assert.ok(
      verifyConsistency(
        first.treeSize,
        last.treeSize,
        first.rootHash,
        last.rootHash,
        await ca.log.consistencyProof(first.treeSize),
      ),
    );
    const [lastCert] = await store.certificates(
      counts.entries - 1,
      counts.entries,
    );
    const proof = (await ca.proof(lastCert.serial))!;
    assert.equal(proof.leafIndex, counts.entries - 1);
    const audit = await ca.audit();
    assert.equal(audit.entries, counts.entries);
    assert.equal(audit.certificates, counts.entries);
  } finally {
    await ca.close();
    await store.close();
  }
}

/**
 * Grows a CA's log to `size` entries fast, for measuring start-up: one real issuance through the
 * CA, then copies of its entry at their own indices, each MACed with the CA's key and with a
 * certificate record, sequenced through the store's API; the CA's next open integrates them (the
 * path a process stopped between sequencing and integration takes) and signs the tree head. The
 * copies carry the first entry's precertificate and SCT, so a full audit would refuse them; the
 * default open never reads entries.
 */
export async function growLog(
  openStore: () => Promise<CaStore>,
  name: string,
  size: number,
): Promise<void> {
  const first = await CertificateAuthority.open({
    name,
    store: await openStore(),
    falconCertificates: false,
  });
  await first.provision("seed");
  await first.close();
  const store = await openStore();
  try {
    const record = decodeIdentityRecord((await store.loadIdentity())!);
    const { macKey } = await loadIdentity(record, SYSTEM_RANDOM);
    const [template] = await store.entries(0, 1);
    const [cert] = await store.certificates(0, 1);
    const leaf = parseTileLeaf(template.entry);
    for (let done = 1; done < size;) {
      const n = Math.min(1000, size - done);
      done += n;
      await store.sequence(n, (at) =>
        Array.from({ length: n }, (_, j) => {
          const leafIndex = at + j;
          const entry = tileLeaf(
            timestampedEntry({
              timestamp: leaf.timestamp,
              issuerKeyHash: leaf.issuerKeyHash!,
              tbs: leaf.signed,
              leafIndex,
            }),
            leaf.preCertificate!,
            leaf.chain,
          );
          const fields = {
            serial: `f${leafIndex.toString(16)}`,
            leafIndex,
            notAfter: cert.notAfter,
            sct: { ...cert.sct, leafIndex },
          };
          return {
            entry: { entry, mac: entryMac(macKey, leafIndex, entry) },
            certificate: { ...fields, mac: certificateMac(macKey, fields) },
          };
        }));
    }
  } finally {
    await store.close();
  }
  const ca = await CertificateAuthority.open({
    name,
    store: await openStore(),
  });
  assert.equal(ca.treeSize, size);
  await ca.close();
}

/** Reads a store method made, while a wrapper counts them. */
export interface StoreReads {
  /** Calls per method. */
  calls: Record<string, number>;
  /** Rows (records, hashes) returned per method. */
  rows: Record<string, number>;
}

/**
 * Wraps a store to count the calls and rows each method returns (the store itself is real).
 */
export function countingStore(inner: CaStore): [CaStore, StoreReads] {
  const reads: StoreReads = { calls: {}, rows: {} };
  const store = new Proxy(inner, {
    get(target, key) {
      const value = Reflect.get(target, key);
      if (typeof value !== "function" || typeof key !== "string") return value;
      return async (...args: unknown[]) => {
        const out = await value.apply(target, args);
        reads.calls[key] = (reads.calls[key] ?? 0) + 1;
        reads.rows[key] = (reads.rows[key] ?? 0) +
          (Array.isArray(out) ? out.length : out === undefined ? 0 : 1);
        return out;
      };
    },
  });
  return [store, reads];
}
