/**
 * Key pairs and requests for apps: a new ECDSA P-256 key (WebCrypto draws its randomness) and a
 * PKCS#10 request for one DNS name, as `provision()` and the service client make them.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import * as der from "./_der.ts";
import { buf } from "./_bytes.ts";

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;

/** A new app key: what a certificate names and what the app keeps. */
export interface NewKey {
  /** SubjectPublicKeyInfo DER. */
  spki: Uint8Array;
  /** PKCS#8 private key, PEM. */
  key: string;
  /** The WebCrypto private key. */
  privateKey: CryptoKey;
}

/** PEM of DER bytes under a label. */
export function pem(bytes: Uint8Array, label: string): string {
  return x509.PemConverter.encode(buf(bytes), label);
}

/**
 * A new ECDSA P-256 key pair.
 *
 * @returns The SubjectPublicKeyInfo, PKCS#8 PEM and WebCrypto private key.
 */
export async function newP256Key(): Promise<NewKey> {
  const keys = await crypto.subtle.generateKey(EC, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const [point, pkcs8] = await Promise.all([
    crypto.subtle.exportKey("raw", keys.publicKey),
    crypto.subtle.exportKey("pkcs8", keys.privateKey),
  ]);
  return {
    spki: der.p256Spki(new Uint8Array(point)),
    key: pem(new Uint8Array(pkcs8), "PRIVATE KEY"),
    privateKey: keys.privateKey,
  };
}

/**
 * A new P-256 key pair and a CSR for one DNS name (CN when it fits, and SAN).
 *
 * @param name The DNS name.
 * @returns The CSR (DER), the private key (PKCS#8 PEM) and the SubjectPublicKeyInfo.
 */
export async function createKeyAndCsr(
  name: string,
): Promise<{ csr: Uint8Array; key: string; spki: Uint8Array }> {
  const k = await newP256Key();
  return {
    csr: await der.buildCsr(name, k.spki, k.privateKey),
    key: k.key,
    spki: k.spki,
  };
}
