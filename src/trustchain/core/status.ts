/**
 * Revocation: signed certificate status answers (an OCSP-like response signed by the issuing CA's
 * root key) and X.509 revocation lists.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { pem } from "./keys.ts";
import {
  buf,
  framed,
  fromBase64,
  toBase64,
  u64,
  utf8ToBytes,
} from "./_bytes.ts";

/** RFC 5280 revocation reasons STOQ accepts. */
export type RevocationReason =
  | "unspecified"
  | "keyCompromise"
  | "cACompromise"
  | "affiliationChanged"
  | "superseded"
  | "cessationOfOperation"
  | "privilegeWithdrawn";

const REASONS: Record<RevocationReason, x509.X509CrlReason> = {
  unspecified: x509.X509CrlReason.unspecified,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  cACompromise: x509.X509CrlReason.cACompromise,
  affiliationChanged: x509.X509CrlReason.affiliationChanged,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
};

/** Whether `reason` names an RFC 5280 reason STOQ accepts. */
export function isRevocationReason(
  reason: unknown,
): reason is RevocationReason {
  return typeof reason === "string" && Object.hasOwn(REASONS, reason);
}

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
 * import { CertificateAuthority, MemoryCaStore } from "../mod.ts";
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

/**
 * Signs a status answer with the CA's root key.
 *
 * @param unsigned The answer without its signature.
 * @param rootKey The root's ECDSA P-256 private key.
 * @returns The signed answer.
 */
export async function signStatus(
  unsigned: Omit<SignedStatus, "signature">,
  rootKey: CryptoKey,
): Promise<SignedStatus> {
  const sig = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    rootKey,
    buf(statusMessage(unsigned)),
  );
  return { ...unsigned, signature: toBase64(new Uint8Array(sig)) };
}

/** One revoked certificate in a revocation list. */
export interface RevokedEntry {
  /** Serial number (hex). */
  serial: string;
  /** RFC 5280 reason name. */
  reason: string;
  /** Milliseconds since the epoch. */
  revokedAt: number;
}

/**
 * An X.509 CRL signed by the CA's root key, valid for one hour from `now`.
 *
 * @param issuer The root certificate.
 * @param signingKey The root's ECDSA P-256 private key.
 * @param now The time of issue.
 * @param entries The revocations.
 * @returns The CRL as PEM (label `X509 CRL`, as OpenSSL and RFC 7468 have it).
 */
export async function buildRevocationList(
  issuer: x509.X509Certificate,
  signingKey: CryptoKey,
  now: Date,
  entries: readonly RevokedEntry[],
): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.subjectName,
    thisUpdate: now,
    nextUpdate: new Date(now.getTime() + 3_600_000),
    entries: entries.map((r) => ({
      serialNumber: r.serial.length % 2 ? `0${r.serial}` : r.serial,
      revocationDate: new Date(r.revokedAt),
      reason: isRevocationReason(r.reason)
        ? REASONS[r.reason]
        : x509.X509CrlReason.unspecified,
    })),
    signingKey,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  });
  return pem(new Uint8Array(crl.rawData), "X509 CRL");
}
