/**
 * Signed certificate status answers (an OCSP-like response signed by the issuing CA's root key).
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { buf, framed, fromBase64, u64, utf8ToBytes } from "./_bytes.ts";

/** RFC 5280 revocation reasons STOQ accepts. */
export type RevocationReason =
  | "unspecified"
  | "keyCompromise"
  | "cACompromise"
  | "affiliationChanged"
  | "superseded"
  | "cessationOfOperation"
  | "privilegeWithdrawn";

/**
 * A serial number in canonical form: lowercase hex without leading zeros, so lookups agree however
 * the serial was printed.
 *
 * @param serial A hex serial.
 * @returns The canonical form.
 *
 * @example Normalising
 * ```ts
 * import { canonicalSerial } from "./status.ts";
 * console.log(canonicalSerial("00AB")); // "ab"
 * ```
 */
export function canonicalSerial(serial: string): string {
  return String(serial).toLowerCase().replace(/^0+/, "") || "0";
}

/** A CA's signed answer about one serial. */
export interface SignedStatus {
  /** The issuing CA's name. */
  issuer: string;
  /** Serial number (hex). */
  serial: string;
  /** `good` (issued, not revoked), `revoked`, or `unknown` (never issued by this CA). */
  status: "good" | "revoked" | "unknown";
  /** The reason, when revoked. */
  reason?: RevocationReason;
  /** Revocation time in ms since the epoch, when revoked. */
  revokedAt?: number;
  /** When the answer was signed, ms since the epoch. */
  producedAt: number;
  /** Base64 ECDSA P-256 SHA-256 signature (IEEE P1363 r||s) by the CA's root key. */
  signature: string;
}

/**
 * The bytes a {@linkcode SignedStatus} signature covers.
 *
 * @param s The status without its signature.
 * @returns The framed message.
 *
 * @example Message for a good serial
 * ```ts
 * import { statusMessage } from "./status.ts";
 * console.log(statusMessage({ issuer: "ca", serial: "01", status: "good", producedAt: 0 }).length > 0); // true
 * ```
 */
export function statusMessage(s: Omit<SignedStatus, "signature">): Uint8Array {
  return framed(
    utf8ToBytes("stoq-status-v1"),
    utf8ToBytes(s.issuer),
    utf8ToBytes(canonicalSerial(s.serial)),
    utf8ToBytes(s.status),
    utf8ToBytes(s.reason ?? ""),
    u64(s.revokedAt ?? 0),
    u64(s.producedAt),
  );
}

/**
 * Verifies a status answer against the issuer's root certificate.
 *
 * @param status The signed status.
 * @param root The issuer's root certificate DER.
 * @returns `true` when the root key signed exactly this answer.
 *
 * @example Checking a status from a CA
 * ```ts
 * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
 * import { verifyStatus } from "./status.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * const id = await ca.provision("app");
 * console.log(await verifyStatus(await ca.status(id.serial), ca.rootDer)); // true
 * ```
 */
export async function verifyStatus(
  status: SignedStatus,
  root: Uint8Array,
): Promise<boolean> {
  try {
    const cert = new x509.X509Certificate(new Uint8Array(root));
    const key = await cert.publicKey.export({
      name: "ECDSA",
      namedCurve: "P-256",
    }, ["verify"]);
    return await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      buf(fromBase64(status.signature)),
      buf(statusMessage(status)),
    );
  } catch {
    return false;
  }
}
