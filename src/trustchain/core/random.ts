/**
 * The random source TrustChain draws from: serial numbers, Falcon-512 nonces and sampler seeds,
 * Falcon key generation. Injectable so issuance is a function of its inputs, a clock and this
 * source (WebCrypto's ECDSA signatures and key generation draw their own randomness).
 *
 * @module
 */

/**
 * Fills `bytes` with random bytes and returns it, like `crypto.getRandomValues`.
 *
 * @example A deterministic source for tests (never for real keys)
 * ```ts
 * import type { RandomSource } from "./random.ts";
 * let counter = 0;
 * const counting: RandomSource = (bytes) => bytes.fill(counter++ & 0xff);
 * console.log(counting(new Uint8Array(2))); // Uint8Array(2) [ 0, 0 ]
 * ```
 */
export type RandomSource = <T extends Uint8Array>(bytes: T) => T;

/**
 * The operating system's random source (`crypto.getRandomValues`), the default everywhere.
 *
 * @example Drawing 16 bytes
 * ```ts
 * import { SYSTEM_RANDOM } from "./random.ts";
 * console.log(SYSTEM_RANDOM(new Uint8Array(16)).length); // 16
 * ```
 */
export const SYSTEM_RANDOM: RandomSource = <T extends Uint8Array>(
  bytes: T,
): T => crypto.getRandomValues(bytes);
