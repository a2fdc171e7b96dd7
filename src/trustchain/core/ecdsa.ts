/**
 * ECDSA P-256 signing for the CA's hot path: `@noble/curves`, synchronous (no thread hop per
 * signature), RFC 6979 nonces hedged with bytes from the injected {@linkcode RandomSource}.
 * Keys are kept and stored as PKCS#8, as WebCrypto imports and exports them.
 *
 * @module
 */

import { p256 } from "npm:@noble/curves@2.4.0/nist.js";
import type { RandomSource } from "./random.ts";
import * as der from "./_der.ts";
import { equalBytes } from "./_bytes.ts";

/** Signs with one ECDSA P-256 key. */
export interface EcdsaSigner {
  /** The key's DER SubjectPublicKeyInfo. */
  readonly spki: Uint8Array;
  /** An ECDSA P-256/SHA-256 signature over `data`, as IEEE P1363 `r || s` (64 bytes). */
  sign(data: Uint8Array): Uint8Array;
}

const EC_ALGORITHM = der.seq(
  der.oid("1.2.840.10045.2.1"),
  der.oid("1.2.840.10045.3.1.7"),
);

/** The 32-byte private scalar inside a P-256 PKCS#8 PrivateKeyInfo. */
function _scalar(pkcs8: Uint8Array): Uint8Array {
  const info = der.readTlv(pkcs8, 0);
  const [, alg, key] = der.children(pkcs8, info);
  if (
    info.tag !== 0x30 || alg?.tag !== 0x30 || key?.tag !== 0x04 ||
    !equalBytes(der.raw(pkcs8, alg), EC_ALGORITHM)
  ) {
    throw new TypeError("Cannot use the key as it is not a P-256 PKCS#8 key");
  }
  const ec = der.readTlv(pkcs8, key.start + key.header);
  const [, secret] = der.children(pkcs8, ec);
  if (
    secret?.tag !== 0x04 || secret.end - secret.start - secret.header !== 32
  ) {
    throw new TypeError("Cannot use the key as its ECPrivateKey is malformed");
  }
  return pkcs8.slice(secret.start + secret.header, secret.end);
}

/**
 * A signer for a P-256 key given as PKCS#8.
 *
 * @param pkcs8 The PrivateKeyInfo DER.
 * @param random Hedging bytes for each signature's nonce.
 * @param spki The key's SubjectPublicKeyInfo when the caller has it (saves recomputing it).
 * @returns The signer.
 * @throws {TypeError} When the key is not a P-256 PKCS#8 key.
 */
export function p256Signer(
  pkcs8: Uint8Array,
  random: RandomSource,
  spki: Uint8Array = der.p256Spki(p256.getPublicKey(_scalar(pkcs8), false)),
): EcdsaSigner {
  const secret = _scalar(pkcs8);
  return {
    spki,
    sign: (data) =>
      p256.sign(data, secret, { extraEntropy: random(new Uint8Array(32)) }),
  };
}

/**
 * A new P-256 key from the random source.
 *
 * @param random Where the key comes from (48 bytes, reduced to a scalar).
 * @returns The PKCS#8 DER and the SubjectPublicKeyInfo DER.
 */
export function newP256Pkcs8(
  random: RandomSource,
): { pkcs8: Uint8Array; spki: Uint8Array } {
  const secret = p256.utils.randomSecretKey(random(new Uint8Array(48)));
  const point = p256.getPublicKey(secret, false);
  const pkcs8 = der.seq(
    der.uint(new Uint8Array([0])),
    EC_ALGORITHM,
    der.octets(
      der.seq(
        der.uint(new Uint8Array([1])),
        der.octets(secret),
        der.tlv(0xa1, der.bits(point)),
      ),
    ),
  );
  secret.fill(0);
  return { pkcs8, spki: der.p256Spki(point) };
}

/**
 * The uncompressed point of a P-256 SubjectPublicKeyInfo.
 *
 * @param spki The DER SubjectPublicKeyInfo.
 * @returns The 65-byte point.
 * @throws {TypeError} When `spki` is not an uncompressed P-256 key.
 */
export function p256Point(spki: Uint8Array): Uint8Array {
  if (!der.isP256Spki(spki)) {
    throw new TypeError(
      "Cannot use the key as it is not an uncompressed P-256 key",
    );
  }
  return spki.subarray(spki.length - 65);
}
