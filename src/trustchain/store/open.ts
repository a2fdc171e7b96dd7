/**
 * Opening a CA store from a URL, as a node's configuration names it
 * (`[trustchain] store = "postgres://…"`).
 *
 * @module
 */

import { StoqError } from "../../errors.ts";
import { MemoryCaStore } from "./memory.ts";
import { PostgresCaStore, type PostgresCaStoreOptions } from "./postgres.ts";
import { SqliteCaStore } from "./sqlite.ts";
import type { CaStore } from "./store.ts";

/**
 * Opens the {@linkcode CaStore} a URL names:
 *
 * | URL                                                | store                                |
 * | -------------------------------------------------- | ------------------------------------ |
 * | `postgres://user[:pw]@host[:port]/db` (`postgresql://`) | `PostgresCaStore` (`?host=/socket/dir`, `?sslmode=`, `?search_path=`) |
 * | `sqlite:path/to/ca.db`, `file:///abs/ca.db`, or a bare path | `SqliteCaStore` (relative to the working directory) |
 * | `memory:`                                          | `MemoryCaStore` (lost at exit)       |
 *
 * @param url The store URL.
 * @param opts PostgreSQL pool options (ignored by the other stores).
 * @returns The open store; `CertificateAuthority.close()` closes it.
 * @throws {StoqError} `INVALID_ARGUMENT` for an unknown scheme or malformed URL; `STORE_ERROR`
 * when the database cannot be opened.
 *
 * @example Choosing the store from configuration
 * ```ts
 * import { CertificateAuthority, openCaStore } from "../mod.ts";
 * const dir = await Deno.makeTempDir();
 * const store = await openCaStore(`sqlite:${dir}/ca.db`);
 * const ca = await CertificateAuthority.open({ name: "ca-1", store });
 * console.log((await ca.provision("app")).proof.leafIndex); // 0
 * await ca.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openCaStore(
  url: string,
  opts: PostgresCaStoreOptions = {},
): Promise<CaStore> {
  if (typeof url !== "string" || url.length === 0) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot open a CA store as 'url' must be a non-empty string: current value is ${url}`,
    );
  }
  if (/^postgres(ql)?:\/\//i.test(url)) {
    return await PostgresCaStore.connect(url, opts);
  }
  if (url === "memory:") return new MemoryCaStore();
  if (url.startsWith("sqlite:")) return new SqliteCaStore(url.slice(7));
  if (url.startsWith("file:")) {
    let path: string;
    try {
      path = decodeURIComponent(new URL(url).pathname);
    } catch (cause) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot open a CA store from ${url}: not a file URL`,
        { cause },
      );
    }
    return new SqliteCaStore(path);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot open a CA store from ${
        url.split(":")[0]
      }: URLs: use postgres://, sqlite:, file: or memory:`,
    );
  }
  return new SqliteCaStore(url);
}
