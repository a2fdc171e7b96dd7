/**
 * Finds and opens STOQ's native libraries: `libstoq.so` (which loads `libmsquic.so.2` beside
 * it) and `libstoq_falcon.so`.
 *
 * Search order: a path given explicitly (the `library` option, else `$STOQ_LIB`) is the only one
 * tried, and an error when it fails; otherwise this checkout's `build/lib/` (when STOQ is
 * imported from files), then the per-user cache that `make native` installs into
 * ({@linkcode userLibraryDir}). Failures name every path tried and how to build or install.
 *
 * @module
 */

import { StoqError } from "../src/errors.ts";
import { ABI_VERSION } from "./abi.ts";
import { type StoqSymbols, symbols } from "./symbols.ts";

/** The command that builds the shim and libmsquic (and installs them for this user). */
export const BUILD_COMMAND = "make native";

/**
 * The per-user library cache: `$XDG_CACHE_HOME/stoq/lib/abi-<N>`, else
 * `~/.cache/stoq/lib/abi-<N>` (`N` is the shim's ABI version, so versions live side by side).
 */
export function userLibraryDir(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") ||
    `${Deno.env.get("HOME") ?? "."}/.cache`;
  return `${cache}/stoq/lib/abi-${ABI_VERSION}`;
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** How to find one library. */
export interface LibrarySpec<S extends Deno.ForeignLibraryInterface> {
  /** The file name (`libstoq.so`). */
  file: string;
  /** What it is, for messages. */
  what: string;
  /** The environment variable that names it explicitly. */
  env: string;
  /** A path the caller gave explicitly. */
  explicit?: string;
  symbols: S;
  /** Throws when the opened library is of another version. */
  checkVersion(lib: Deno.DynamicLibrary<S>, path: string): void;
}

/**
 * Opens a library by {@linkcode LibrarySpec}.
 *
 * @throws {StoqError} `LIBRARY_NOT_FOUND` naming every path tried and how to build or install
 *   it (or, for an explicit path, why it failed); `LIBRARY_VERSION` from `checkVersion`.
 */
export function loadLibrary<S extends Deno.ForeignLibraryInterface>(
  spec: LibrarySpec<S>,
): Deno.DynamicLibrary<S> {
  const explicit = spec.explicit ?? (Deno.env.get(spec.env) || undefined);
  const open = (path: string): Deno.DynamicLibrary<S> => {
    const lib = Deno.dlopen(path, spec.symbols);
    try {
      spec.checkVersion(lib, path);
    } catch (err) {
      lib.close();
      throw err;
    }
    return lib;
  };
  const missingDependency = (path: string, err: unknown) => {
    const text = err instanceof Error ? err.message : String(err);
    const dep = /(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(
      text,
    );
    if (!dep || dep[1] === spec.file) return undefined;
    return new StoqError(
      "LIBRARY_NOT_FOUND",
      `Cannot load ${spec.what}: ${path} was found, but ${
        dep[1]
      } it needs could not be loaded (it belongs in the same folder). Run \`${BUILD_COMMAND}\` again, which builds and installs both`,
      { cause: err },
    );
  };
  if (explicit !== undefined) {
    const how = spec.explicit !== undefined
      ? "the 'library' option"
      : `$${spec.env}`;
    if (!exists(explicit)) {
      throw new StoqError(
        "LIBRARY_NOT_FOUND",
        `Cannot load ${spec.what} from ${explicit} (given by ${how}): no such file. Fix the path, or leave it unset to use ${userLibraryDir()}`,
      );
    }
    try {
      return open(explicit);
    } catch (err) {
      if (err instanceof StoqError) throw err;
      throw missingDependency(explicit, err) ?? new StoqError(
        "LIBRARY_NOT_FOUND",
        `Cannot load ${spec.what} from ${explicit} (given by ${how}): ${
          err instanceof Error ? err.message : err
        }`,
        { cause: err },
      );
    }
  }
  const tried: string[] = [];
  const here = new URL(import.meta.url);
  const dirs = [
    ...(here.protocol === "file:"
      ? [new URL("../build/lib/", import.meta.url).pathname.replace(/\/$/, "")]
      : []),
    userLibraryDir(),
  ];
  let lastError: unknown;
  for (const dir of dirs) {
    const path = `${dir}/${spec.file}`;
    if (!exists(path)) {
      tried.push(`${path} (missing)`);
      continue;
    }
    try {
      return open(path);
    } catch (err) {
      if (err instanceof StoqError) throw err;
      const dep = missingDependency(path, err);
      if (dep) throw dep;
      tried.push(`${path} (${err instanceof Error ? err.message : err})`);
      lastError = err;
    }
  }
  throw new StoqError(
    "LIBRARY_NOT_FOUND",
    `Cannot load ${spec.what}: looked for ${
      tried.join(", ")
    }. Build it with \`${BUILD_COMMAND}\` in a STOQ checkout (it installs into ${userLibraryDir()}), or point $${spec.env} at ${spec.file}`,
    { cause: lastError },
  );
}

let opened:
  | { lib: Deno.DynamicLibrary<typeof symbols>; path?: string }
  | undefined;

/**
 * Opens the shim once per process and checks its ABI version.
 *
 * @param path An explicit path (the endpoint's `library` option).
 * @throws {StoqError} `LIBRARY_NOT_FOUND` naming every file looked for and the build command,
 *   or `LIBRARY_VERSION` when the file is from another STOQ version.
 */
export function openLibrary(path?: string): StoqSymbols {
  if (opened) {
    if (path !== undefined && opened.path !== path) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot use the library at ${path}: this process already loaded ${
          opened.path ?? "the default one"
        } (one per process)`,
      );
    }
    return opened.lib.symbols;
  }
  const lib = loadLibrary({
    file: "libstoq.so",
    what: "the STOQ shim",
    env: "STOQ_LIB",
    explicit: path,
    symbols,
    checkVersion(lib, file) {
      const version = lib.symbols.stoq_abi_version();
      if (version !== ABI_VERSION) {
        throw new StoqError(
          "LIBRARY_VERSION",
          `${file} has shim ABI ${version} but this STOQ needs ${ABI_VERSION}: rebuild it with \`${BUILD_COMMAND}\``,
        );
      }
    },
  });
  opened = { lib, path };
  return lib.symbols;
}
