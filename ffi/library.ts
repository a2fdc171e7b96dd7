/**
 * Finds and opens `libstoq.so` (which loads `libmsquic.so.2` beside it).
 *
 * Search order: the `path` option, then `$STOQ_LIB`, then `build/lib/` of this checkout.
 *
 * @module
 */

import { StoqError } from "../src/errors.ts";
import { ABI_VERSION } from "./abi.ts";
import { type StoqSymbols, symbols } from "./symbols.ts";

/** The command that builds the shim and libmsquic. */
export const BUILD_COMMAND = "make native";

let opened:
  | { lib: Deno.DynamicLibrary<typeof symbols>; path: string }
  | undefined;

function candidates(path?: string): string[] {
  const list: string[] = [];
  if (path) list.push(path);
  const env = Deno.env.get("STOQ_LIB");
  if (env) list.push(env);
  list.push(new URL("../build/lib/libstoq.so", import.meta.url).pathname);
  return list;
}

/**
 * Opens the shim once per process and checks its ABI version.
 *
 * @throws {StoqError} `LIBRARY_NOT_FOUND` naming every file looked for and the build command,
 *   or `LIBRARY_VERSION` when the file is from another STOQ version.
 */
export function openLibrary(path?: string): StoqSymbols {
  if (opened) return opened.lib.symbols;
  const tried: string[] = [];
  let lastError: unknown;
  for (const file of candidates(path)) {
    tried.push(file);
    let lib: Deno.DynamicLibrary<typeof symbols>;
    try {
      lib = Deno.dlopen(file, symbols);
    } catch (err) {
      lastError = err;
      continue;
    }
    const version = lib.symbols.stoq_abi_version();
    if (version !== ABI_VERSION) {
      lib.close();
      throw new StoqError(
        "LIBRARY_VERSION",
        `${file} has shim ABI ${version} but this STOQ needs ${ABI_VERSION}: rebuild it with \`${BUILD_COMMAND}\``,
      );
    }
    opened = { lib, path: file };
    return lib.symbols;
  }
  throw new StoqError(
    "LIBRARY_NOT_FOUND",
    `Cannot load the STOQ shim: looked for ${
      tried.join(", ")
    }. Build it with \`${BUILD_COMMAND}\` or point STOQ_LIB at libstoq.so`,
    { cause: lastError },
  );
}
