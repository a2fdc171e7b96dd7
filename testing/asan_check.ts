/**
 * Run by `make test-asan` before the transport tests, under the same environment: proves that
 * the sanitized shim is the one STOQ loads (ffi/library.ts falls back to build/lib/ when
 * `$STOQ_LIB` cannot be opened, which would silently test the plain build) and that a sanitizer
 * report ends the process with a failure, for ASan and for UBSan (testing/asan_canary.c).
 *
 *   deno run -A --unstable-net testing/asan_check.ts <canary.so>
 *
 * @module
 */

import { StoqEndpoint } from "../mod.ts";

const [canaryPath, kind] = Deno.args;

if (kind !== undefined) {
  // Child: trip the canary; a working sanitizer kills this process before it returns.
  const lib = Deno.dlopen(canaryPath, {
    stoq_canary: { parameters: ["i32", "i32"], result: "i32" },
  });
  console.log(
    `canary ${kind} returned ${lib.symbols.stoq_canary(Number(kind), 16)}`,
  );
  Deno.exit(0);
}

const wanted = Deno.env.get("STOQ_LIB");
if (!wanted) throw new Error("asan_check: STOQ_LIB is not set");
const real = await Deno.realPath(wanted);
const endpoint = new StoqEndpoint();
const maps = await Deno.readTextFile("/proc/self/maps");
await endpoint.close();
const loaded = [
  ...new Set(
    maps.split("\n").map((l) => l.split(/\s+/)[5]).filter((p) =>
      p?.endsWith("/libstoq.so")
    ),
  ),
];
if (loaded.length !== 1 || loaded[0] !== real) {
  throw new Error(
    `asan_check: expected only ${real} to be loaded, found ${
      JSON.stringify(loaded)
    }`,
  );
}
if (!maps.includes("libasan.so")) {
  throw new Error("asan_check: the ASan runtime is not loaded (LD_PRELOAD)");
}
console.log(`asan_check: STOQ runs on ${real} with the ASan runtime`);

for (
  const [kind, report] of [
    ["1", "ERROR: AddressSanitizer: heap-buffer-overflow"],
    ["2", "runtime error: signed integer overflow"],
  ]
) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, canaryPath, kind],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (out.success || !stderr.includes(report)) {
    throw new Error(
      `asan_check: canary ${kind} should have failed with "${report}" but exited with ${out.code}:\n${stderr}`,
    );
  }
  console.log(`asan_check: canary ${kind} failed the process with "${report}"`);
}
