/**
 * The Falcon-512 signer library, `libstoq_falcon.so` (native/falcon/): its symbol table and
 * loading. Separate from the transport shim; only TrustChain uses it.
 *
 * Search order: `$STOQ_FALCON_LIB`, then as for the shim (`build/lib/` of this checkout, then
 * the per-user cache).
 *
 * @module
 */

import { StoqError } from "../src/errors.ts";
import { BUILD_COMMAND, loadLibrary } from "./library.ts";

/** The ABI version of native/falcon/falcon.c this module speaks. */
export const FALCON_ABI_VERSION = 1;

/** Variant numbers `stoq_falcon_keygen` and `stoq_falcon_key_open` take. */
export const FalconVariant = {
  /** The fastest one this CPU runs. */
  auto: 0,
  /** PQClean's portable build (emulated floating point). */
  portable: 1,
  /** PQClean's AVX2 build (native floating point). */
  avx2: 2,
} as const;

/** The symbols of `libstoq_falcon.so`, with their C types and who owns what. */
export const falconSymbols = {
  /** `uint32_t stoq_falcon_abi_version(void)` */
  stoq_falcon_abi_version: { parameters: [], result: "u32" },
  /** `uint32_t stoq_falcon_variant(void)`: what `auto` resolves to here (1 or 2). */
  stoq_falcon_variant: { parameters: [], result: "u32" },
  /**
   * `int32_t stoq_falcon_keygen(uint32_t variant, const uint8_t *seed, uint8_t *pk, uint8_t *sk)`:
   * seed 48 bytes (read), pk 897 and sk 1281 bytes (written; the caller's buffers). 0 on success,
   * -1 variant unavailable, -2 encoding failure.
   */
  stoq_falcon_keygen: {
    parameters: ["u32", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  /**
   * `stoq_falcon_key *stoq_falcon_key_open(uint32_t variant, const uint8_t *sk, size_t sk_len)`:
   * returns a key handle the caller owns until `stoq_falcon_key_close`; NULL for a malformed key.
   */
  stoq_falcon_key_open: {
    parameters: ["u32", "buffer", "usize"],
    result: "pointer",
  },
  /** `void stoq_falcon_key_close(stoq_falcon_key *key)`: wipes and frees the handle, once. */
  stoq_falcon_key_close: { parameters: ["pointer"], result: "void" },
  /** `uint32_t stoq_falcon_key_variant(const stoq_falcon_key *key)`: 1 portable, 2 AVX2. */
  stoq_falcon_key_variant: { parameters: ["pointer"], result: "u32" },
  /**
   * `int32_t stoq_falcon_sign(const stoq_falcon_key *key, const uint8_t *rnd, const uint8_t *msg,
   * size_t msg_len, uint8_t *sig)`: rnd 88 bytes (nonce, then sampler seed), msg read during the
   * call, sig 752 bytes written. Returns the signature length, -1 bad handle, -2 retry.
   */
  stoq_falcon_sign: {
    parameters: ["pointer", "buffer", "buffer", "usize", "buffer"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded Falcon library's functions. */
export type FalconSymbols = Deno.DynamicLibrary<
  typeof falconSymbols
>["symbols"];

let opened: FalconSymbols | undefined;

/**
 * Opens `libstoq_falcon.so` once per process and checks its ABI version (`$STOQ_FALCON_LIB`,
 * else the search of {@linkcode loadLibrary}).
 *
 * @returns The library's functions.
 * @throws {StoqError} `LIBRARY_NOT_FOUND` naming every file looked for and the build command, or
 *   `LIBRARY_VERSION` when the file is from another STOQ version.
 */
export function openFalconLibrary(): FalconSymbols {
  opened ??= loadLibrary({
    file: "libstoq_falcon.so",
    what: "STOQ's Falcon-512 signer",
    env: "STOQ_FALCON_LIB",
    symbols: falconSymbols,
    checkVersion(lib, file) {
      const version = lib.symbols.stoq_falcon_abi_version();
      if (version !== FALCON_ABI_VERSION) {
        throw new StoqError(
          "LIBRARY_VERSION",
          `${file} has Falcon ABI ${version} but this STOQ needs ${FALCON_ABI_VERSION}: rebuild it with \`${BUILD_COMMAND}\``,
        );
      }
    },
  }).symbols;
  return opened;
}
