/**
 * Key pairs and requests for apps: a new ECDSA P-256 key and a PKCS#10 request for one DNS name,
 * as `provision()` and the service client make them.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { newP256Pkcs8, p256Signer } from "./ecdsa.ts";
import { type RandomSource, SYSTEM_RANDOM } from "./random.ts";
import * as der from "./_der.ts";
import { buf } from "./_bytes.ts";

/** A new app key: what a certificate names and what the app keeps. */
export interface NewKey {
  /** SubjectPublicKeyInfo DER. */
  spki: Uint8Array;
  /** PKCS#8 private key, PEM. */
  key: string;
  /** Signs with the key (ECDSA P-256/SHA-256, `r || s`). */
  sign(data: Uint8Array): Uint8Array;
}

/** PEM of DER bytes under a label. */
export function pem(bytes: Uint8Array, label: string): string {
  return x509.PemConverter.encode(buf(bytes), label);
}

/**
 * A new ECDSA P-256 key pair.
 *
 * @param random Where the key comes from.
 * @returns The SubjectPublicKeyInfo, PKCS#8 PEM and a signer.
 */
export function newP256Key(random: RandomSource = SYSTEM_RANDOM): NewKey {
  const { pkcs8, spki } = newP256Pkcs8(random);
  const signer = p256Signer(pkcs8, random, spki);
  const key = pem(pkcs8, "PRIVATE KEY");
  pkcs8.fill(0);
  return { spki, key, sign: signer.sign };
}

/**
 * A new P-256 key pair and a CSR for one DNS name (CN when it fits, and SAN).
 *
 * @param name The DNS name.
 * @returns The CSR (DER), the private key (PKCS#8 PEM) and the SubjectPublicKeyInfo.
 */
export function createKeyAndCsr(
  name: string,
): Promise<{ csr: Uint8Array; key: string; spki: Uint8Array }> {
  const k = newP256Key();
  return Promise.resolve({
    csr: der.buildCsr(name, k.spki, k.sign),
    key: k.key,
    spki: k.spki,
  });
}
