/**
 * Falcon-512 co-signatures for certificates and checkpoints ("quantum-ready" TrustChain).
 *
 * Each CA holds one Falcon-512 key, generated once per CA (keygen takes hundreds of milliseconds);
 * only signing happens per certificate.
 *
 * Certificates carry the co-signature in a non-critical X.509 extension whose value is a DER OCTET
 * STRING holding the raw Falcon signature. The OID {@linkcode FALCON_COSIGNATURE_OID} is
 * `1.3.6.1.4.1.32473.57.1`, under the IANA example enterprise number of RFC 5612: a placeholder until
 * STOQ registers its own arc (a UUID arc under `2.25` would need no registration, but
 * `@peculiar/x509` cannot encode 128-bit arcs). The extension lives inside
 * the TBSCertificate, so Falcon cannot sign the finished certificate; it signs instead the
 * length-framed tuple `"stoq-falcon-cert-v1" || SubjectPublicKeyInfo DER || serial || notBefore ||
 * notAfter || subject DER || issuer DER || SubjectAltName DER` (see {@linkcode falconCertificateMessage}),
 * which pins the key, identity and validity the ECDSA signature also covers.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { AsnConvert, OctetString } from "npm:@peculiar/asn1-schema@2.11.1";
import { falcon512 } from "npm:@noble/post-quantum@0.7.1/falcon.js";
import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { framed, hexToBytes, u64, utf8ToBytes } from "./_bytes.ts";

/** The private OID of the Falcon-512 co-signature certificate extension (placeholder arc, RFC 5612). */
export const FALCON_COSIGNATURE_OID = "1.3.6.1.4.1.32473.57.1";

/** A Falcon-512 key pair (raw bytes as produced by `@noble/post-quantum`). */
export interface FalconKeyPair {
  /** The 897-byte public key. */
  publicKey: Uint8Array;
  /** The secret key. */
  secretKey: Uint8Array;
}

/**
 * Generates a Falcon-512 key pair. Slow (about 0.5 s): do it once per CA.
 *
 * @returns A new key pair.
 *
 * @example Generating a CA's Falcon key
 * ```ts
 * import { generateFalconKeyPair } from "./falcon.ts";
 * const { publicKey } = generateFalconKeyPair();
 * console.log(publicKey.length); // 897
 * ```
 */
export function generateFalconKeyPair(): FalconKeyPair {
  const { publicKey, secretKey } = falcon512.keygen();
  return { publicKey, secretKey };
}

/**
 * Signs a message with Falcon-512.
 *
 * @param message The bytes to sign.
 * @param secretKey The Falcon secret key.
 * @returns The detached signature.
 *
 * @example Signing and verifying
 * ```ts
 * import { falconSign, falconVerify, generateFalconKeyPair } from "./falcon.ts";
 * const keys = generateFalconKeyPair();
 * const sig = falconSign(new Uint8Array([1]), keys.secretKey);
 * console.log(falconVerify(sig, new Uint8Array([1]), keys.publicKey)); // true
 * ```
 */
export function falconSign(
  message: Uint8Array,
  secretKey: Uint8Array,
): Uint8Array {
  return falcon512.sign(message, secretKey);
}

/**
 * Verifies a Falcon-512 signature; malformed input verifies as `false` rather than throwing.
 *
 * @param signature The detached signature.
 * @param message The signed bytes.
 * @param publicKey The Falcon public key.
 * @returns `true` when the signature is valid.
 *
 * @example Rejecting a wrong message
 * ```ts
 * import { falconSign, falconVerify, generateFalconKeyPair } from "./falcon.ts";
 * const keys = generateFalconKeyPair();
 * const sig = falconSign(new Uint8Array([1]), keys.secretKey);
 * console.log(falconVerify(sig, new Uint8Array([2]), keys.publicKey)); // false
 * ```
 */
export function falconVerify(
  signature: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
): boolean {
  try {
    return falcon512.verify(signature, message, publicKey);
  } catch {
    return false;
  }
}

/** The certificate fields the Falcon co-signature covers. */
export interface FalconCertificateFields {
  /** SubjectPublicKeyInfo DER. */
  spki: Uint8Array;
  /** Serial number as hex. */
  serial: string;
  /** Start of validity. */
  notBefore: Date;
  /** End of validity. */
  notAfter: Date;
  /** Subject Name DER. */
  subject: Uint8Array;
  /** Issuer Name DER. */
  issuer: Uint8Array;
  /** SubjectAltName extension value DER (empty when absent). */
  san: Uint8Array;
}

/**
 * The message the Falcon co-signature of a certificate signs.
 *
 * @param fields The covered certificate fields.
 * @returns A 32-byte digest of the length-framed fields.
 *
 * @example Digest length
 * ```ts
 * import { falconCertificateMessage } from "./falcon.ts";
 * const empty = new Uint8Array(0);
 * const msg = falconCertificateMessage({
 *   spki: empty, serial: "01", notBefore: new Date(0), notAfter: new Date(1),
 *   subject: empty, issuer: empty, san: empty,
 * });
 * console.log(msg.length); // 32
 * ```
 */
export function falconCertificateMessage(
  fields: FalconCertificateFields,
): Uint8Array {
  // Serials compare as integers: drop leading zeros, then pad to whole bytes.
  const hex = fields.serial.toLowerCase().replace(/^0+/, "");
  const serial = hex.length % 2 === 1 ? `0${hex}` : hex;
  return sha256(framed(
    utf8ToBytes("stoq-falcon-cert-v1"),
    fields.spki,
    hexToBytes(serial),
    u64(fields.notBefore.getTime()),
    u64(fields.notAfter.getTime()),
    fields.subject,
    fields.issuer,
    fields.san,
  ));
}

/** The non-critical Falcon co-signature extension (internal: the type is @peculiar/x509's). */
export function _falconExtension(signature: Uint8Array): x509.Extension {
  const value = AsnConvert.serialize(
    new OctetString(new Uint8Array(signature)),
  );
  return new x509.Extension(FALCON_COSIGNATURE_OID, false, value);
}

/** The covered fields of a finished certificate. */
export function _certificateFields(
  cert: x509.X509Certificate,
): FalconCertificateFields {
  const san = cert.extensions.find((e) => e.type === "2.5.29.17");
  return {
    spki: new Uint8Array(cert.publicKey.rawData),
    serial: cert.serialNumber,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    subject: new Uint8Array(cert.subjectName.toArrayBuffer()),
    issuer: new Uint8Array(cert.issuerName.toArrayBuffer()),
    san: san ? new Uint8Array(san.value) : new Uint8Array(0),
  };
}

/**
 * Checks a certificate's Falcon co-signature.
 *
 * @param cert The certificate DER.
 * @param publicKey The issuing CA's Falcon public key.
 * @returns `"absent"` when the certificate has no co-signature, `"valid"` or `"invalid"` otherwise.
 *
 * @example Checking a provisioned certificate
 * ```ts
 * import { CertificateAuthority, MemoryCaStore } from "./mod.ts";
 * import { verifyCertificateFalcon } from "./falcon.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * const id = await ca.provision("app");
 * console.log(verifyCertificateFalcon(id.chainDer[0], ca.falconPublicKey)); // "valid"
 * ```
 */
export function verifyCertificateFalcon(
  cert: Uint8Array,
  publicKey: Uint8Array,
): "absent" | "valid" | "invalid" {
  let parsed: x509.X509Certificate;
  try {
    parsed = new x509.X509Certificate(new Uint8Array(cert));
  } catch {
    return "invalid";
  }
  return _verifyParsedFalcon(parsed, publicKey);
}

/** {@linkcode verifyCertificateFalcon} for an already parsed certificate. */
export function _verifyParsedFalcon(
  parsed: x509.X509Certificate,
  publicKey: Uint8Array,
): "absent" | "valid" | "invalid" {
  const ext = parsed.extensions.find((e) => e.type === FALCON_COSIGNATURE_OID);
  if (!ext) return "absent";
  let signature: Uint8Array;
  try {
    signature = new Uint8Array(AsnConvert.parse(ext.value, OctetString).buffer);
  } catch {
    return "invalid";
  }
  const message = falconCertificateMessage(_certificateFields(parsed));
  return falconVerify(signature, message, publicKey) ? "valid" : "invalid";
}
