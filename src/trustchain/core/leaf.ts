/**
 * Leaf certificate assembly, in DER, under the RFC 5280 profile TrustChain issues:
 *
 * - version 3, a positive 128-bit random serial, ecdsa-with-SHA256, UTCTime validity;
 * - the subject is `CN=<first name>` when that name fits the 64-character upper bound of
 *   RFC 5280 (ub-common-name); otherwise the subject is empty and the subjectAltName, which
 *   always lists every name, is critical (RFC 5280 §4.2.1.6);
 * - basicConstraints (critical, not a CA), keyUsage (critical, digitalSignature),
 *   extKeyUsage (serverAuth, clientAuth), authorityKeyIdentifier, subjectAltName,
 *   subjectKeyIdentifier, then the optional Falcon-512 co-signature;
 * - for Certificate Transparency (RFC 6962 §3.1), the precertificate carries the critical poison
 *   extension last and the final certificate carries the SCT list extension in its place, so
 *   removing either gives the same TBSCertificate, which is what the log entry holds.
 *
 * Functions here are pure; signing is the caller's.
 *
 * @module
 */

import * as der from "./_der.ts";
import { bytesToHex, concatBytes } from "./_bytes.ts";
import type { FalconCertificateFields } from "./falcon.ts";
import { FALCON_COSIGNATURE_OID } from "./falcon.ts";
import type { RandomSource } from "./random.ts";

/** RFC 5280's upper bound on a common name, in characters (ub-common-name). */
export const MAX_COMMON_NAME = 64;

/** What a leaf certificate says, before extensions that depend on signatures. */
export interface LeafTemplate {
  /** Serial number, canonical lowercase hex. */
  serial: string;
  /** Validity start (whole seconds). */
  notBefore: Date;
  /** Validity end (whole seconds). */
  notAfter: Date;
  /** The DNS names, first one as the common name when it fits. */
  names: readonly string[];
  /** The subject's SubjectPublicKeyInfo, DER. */
  spki: Uint8Array;
  /** The issuer's Name, DER. */
  issuer: Uint8Array;
  /** The issuer's key identifier (its subjectKeyIdentifier). */
  authorityKeyId: Uint8Array;
}

/**
 * A fresh serial number: 128 random bits as canonical hex (positive, no leading zeros).
 *
 * @param random The random source.
 * @returns The serial.
 */
export function newSerial(random: RandomSource): string {
  return bytesToHex(random(new Uint8Array(16))).replace(/^0+/, "") || "1";
}

/**
 * The subject Name for a set of names: `CN=<first>` when it has at most 64 characters, else
 * empty (and the subjectAltName must then be critical).
 *
 * @param names The DNS names.
 * @returns The Name DER and whether the subjectAltName must be critical.
 */
export function leafSubject(
  names: readonly string[],
): { subject: Uint8Array; sanCritical: boolean } {
  const cn = names[0];
  return cn !== undefined && cn.length <= MAX_COMMON_NAME && !cn.includes(":")
    ? { subject: der.cnName(cn), sanCritical: false }
    : { subject: der.EMPTY_NAME, sanCritical: true };
}

/** The parts of a leaf a Falcon co-signature and the extensions are built from. */
export interface LeafParts {
  /** The subject Name DER. */
  subject: Uint8Array;
  /** The subjectAltName extension value DER. */
  san: Uint8Array;
  /** Whether the subjectAltName is critical. */
  sanCritical: boolean;
}

/**
 * The subject and subjectAltName of a template.
 *
 * @param t The template.
 * @returns The parts.
 */
export function leafParts(t: LeafTemplate): LeafParts {
  return { ...leafSubject(t.names), san: der.sanValue([...t.names]) };
}

/**
 * The fields a Falcon co-signature of this leaf covers.
 *
 * @param t The template.
 * @param parts Its subject and subjectAltName.
 * @returns The fields for `falconCertificateMessage`.
 */
export function falconFields(
  t: LeafTemplate,
  parts: LeafParts,
): FalconCertificateFields {
  return {
    spki: t.spki,
    serial: t.serial,
    notBefore: t.notBefore,
    notAfter: t.notAfter,
    subject: parts.subject,
    issuer: t.issuer,
    san: parts.san,
  };
}

const BASIC_CONSTRAINTS = der.extension("2.5.29.19", true, der.seq());
const KEY_USAGE = der.extension(
  "2.5.29.15",
  true,
  der.tlv(0x03, new Uint8Array([7, 0x80])), // digitalSignature
);
const EXT_KEY_USAGE = der.extension(
  "2.5.29.37",
  false,
  der.seq(der.oid("1.3.6.1.5.5.7.3.1"), der.oid("1.3.6.1.5.5.7.3.2")),
);

/**
 * The extensions every form of the leaf shares (the precertificate adds the poison after them,
 * the final certificate the SCT list).
 *
 * @param t The template.
 * @param parts Its subject and subjectAltName.
 * @param falconSignature The Falcon-512 co-signature, when the CA co-signs.
 * @returns The Extension DERs, in order.
 * @throws {TypeError} When the key is not one whose identifier this profile computes.
 */
export function leafExtensions(
  t: LeafTemplate,
  parts: LeafParts,
  falconSignature?: Uint8Array,
): Uint8Array[] {
  const keyId = der.keyIdentifier(t.spki);
  if (!keyId) {
    throw new TypeError(
      "Cannot assemble a leaf as 'spki' must be an ECDSA P-256 or Ed25519 key",
    );
  }
  const out = [
    BASIC_CONSTRAINTS,
    KEY_USAGE,
    EXT_KEY_USAGE,
    der.extension(
      "2.5.29.35",
      false,
      der.seq(der.tlv(0x80, t.authorityKeyId)),
    ),
    der.extension("2.5.29.17", parts.sanCritical, parts.san),
    der.extension("2.5.29.14", false, der.octets(keyId)),
  ];
  if (falconSignature) {
    out.push(
      der.extension(FALCON_COSIGNATURE_OID, false, der.octets(falconSignature)),
    );
  }
  return out;
}

/**
 * A leaf's TBSCertificate.
 *
 * @param t The template.
 * @param subject The subject Name DER.
 * @param extensions The Extension DERs, in order.
 * @returns The TBSCertificate DER.
 */
export function leafTbs(
  t: LeafTemplate,
  subject: Uint8Array,
  extensions: readonly Uint8Array[],
): Uint8Array {
  return der.seq(
    der.tlv(0xa0, der.uint(new Uint8Array([2]))),
    der.serialInteger(t.serial),
    der.ECDSA_SHA256,
    t.issuer,
    der.seq(der.time(t.notBefore), der.time(t.notAfter)),
    subject,
    t.spki,
    der.tlv(0xa3, der.seq(concatBytes(...extensions))),
  );
}

/**
 * A signed Certificate from its TBSCertificate and the issuer's ECDSA signature.
 *
 * @param tbs The TBSCertificate DER.
 * @param p1363 The ECDSA P-256 signature as WebCrypto returns it (`r || s`).
 * @returns The Certificate DER.
 */
export function signedCertificate(
  tbs: Uint8Array,
  p1363: Uint8Array,
): Uint8Array {
  return der.seq(tbs, der.ECDSA_SHA256, der.bits(der.ecdsaDer(p1363)));
}
