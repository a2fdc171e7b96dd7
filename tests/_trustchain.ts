/**
 * Helpers shared by the TrustChain tests.
 *
 * @module
 */

import {
  CertificateAuthority,
  MemoryCaStore,
  type SignedTrustBundle,
  type TrustBundle,
} from "../src/trustchain/mod.ts";

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
