/**
 * Falcon-512 co-signatures for certificates and checkpoints ("quantum-ready" TrustChain).
 *
 * Signing is native: `libstoq_falcon.so` (native/falcon/, PQClean's falcon-512 built by
 * `make native`) with the private key expanded once into a {@linkcode FalconSigner} and kept
 * between signatures, so one signature costs about 0.1 ms (AVX2 build; the portable build about
 * 1.5 ms) instead of the 3–5 ms of re-expanding the key every time. Randomness (nonce and sampler
 * seed) comes from an injected {@linkcode RandomSource}. Verification is pure TypeScript
 * (`@noble/post-quantum`), an implementation independent of the signer, so peers need no native
 * code to check co-signatures.
 *
 * Certificates carry the co-signature in a non-critical X.509 extension whose value is a DER OCTET
 * STRING holding the raw Falcon signature. The OID {@linkcode FALCON_COSIGNATURE_OID} is
 * `1.3.6.1.4.1.32473.57.1`, under the IANA example enterprise number of RFC 5612: a placeholder until
 * STOQ registers its own arc (a UUID arc under `2.25` would need no registration, but
 * `@peculiar/x509` cannot encode 128-bit arcs). The extension lives inside
 * the TBSCertificate, so Falcon cannot sign the finished certificate; it signs instead the
 * length-framed tuple `"stoq-falcon-cert-v1" || SubjectPublicKeyInfo DER || serial || notBefore ||
 * notAfter || subject DER || issuer DER || SubjectAltName DER` (see {@linkcode falconCertificateMessage}),
 * which pins the key, identity and validity the ECDSA signature also covers. The same extension
 * sits in the precertificate and the final certificate, so the CT log entry covers it too.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { AsnConvert, OctetString } from "npm:@peculiar/asn1-schema@2.11.1";
import { falcon512 } from "npm:@noble/post-quantum@0.7.1/falcon.js";
import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { FalconVariant, openFalconLibrary } from "../../../ffi/falcon.ts";
import { StoqError } from "../../errors.ts";
import { type RandomSource, SYSTEM_RANDOM } from "./random.ts";
import { framed, hexToBytes, u64, utf8ToBytes } from "./_bytes.ts";

/** The private OID of the Falcon-512 co-signature certificate extension (placeholder arc, RFC 5612). */
export const FALCON_COSIGNATURE_OID = "1.3.6.1.4.1.32473.57.1";

const PUBLIC_KEY_BYTES = 897;
const SECRET_KEY_BYTES = 1281;
const SIGNATURE_MAX = 752;
const RANDOM_BYTES = 88; // 40-byte nonce, 48-byte sampler seed

/** A Falcon-512 key pair in the NIST round 3 / PQClean encodings. */
export interface FalconKeyPair {
  /** The 897-byte public key. */
  publicKey: Uint8Array;
  /** The 1281-byte secret key. */
  secretKey: Uint8Array;
}

/** Which build of PQClean signs: `"avx2"` (native floating point) or `"portable"`. */
export type FalconVariantName = "portable" | "avx2";

/** Options for {@linkcode FalconSigner.open} and {@linkcode generateFalconKeyPair}. */
export interface FalconOptions {
  /**
   * The PQClean build to use; `"avx2"` fails with `INVALID_ARGUMENT` on CPUs without AVX2.
   * @default {"auto"} (AVX2 when the CPU has it)
   */
  variant?: FalconVariantName | "auto";
}

function _variant(opts: FalconOptions): number {
  const v = opts.variant ?? "auto";
  if (!(v in FalconVariant)) {
    throw new TypeError(
      `Cannot use Falcon as 'variant' must be "auto", "portable" or "avx2": current value is ${v}`,
    );
  }
  return FalconVariant[v];
}

function _unavailable(variant: number): StoqError {
  return new StoqError(
    "INVALID_ARGUMENT",
    `Falcon variant ${variant} cannot run on this CPU: use "auto" or "portable"`,
  );
}

/**
 * Generates a Falcon-512 key pair (a few milliseconds; do it once per CA).
 *
 * @param random Where the 48-byte key seed comes from.
 * @param opts Which PQClean build generates it.
 * @returns A new key pair.
 * @throws {StoqError} `LIBRARY_NOT_FOUND` when `libstoq_falcon.so` is not built (`make native`).
 *
 * @example Generating a CA's Falcon key
 * ```ts
 * import { generateFalconKeyPair } from "./falcon.ts";
 * const { publicKey, secretKey } = generateFalconKeyPair();
 * console.log(publicKey.length, secretKey.length); // 897 1281
 * ```
 */
export function generateFalconKeyPair(
  random: RandomSource = SYSTEM_RANDOM,
  opts: FalconOptions = {},
): FalconKeyPair {
  const lib = openFalconLibrary();
  const variant = _variant(opts);
  const seed = random(new Uint8Array(48));
  const publicKey = new Uint8Array(PUBLIC_KEY_BYTES);
  const secretKey = new Uint8Array(SECRET_KEY_BYTES);
  const rc = lib.stoq_falcon_keygen(variant, seed, publicKey, secretKey);
  seed.fill(0);
  if (rc === -1) throw _unavailable(variant);
  if (rc !== 0) {
    throw new StoqError("NATIVE_ERROR", `Falcon key generation failed (${rc})`);
  }
  return { publicKey, secretKey };
}

// Frees a signer's native key if it is garbage-collected without close() (a safety net only).
const _finalizer = new FinalizationRegistry<Deno.PointerObject>((key) =>
  openFalconLibrary().stoq_falcon_key_close(key)
);

/**
 * A Falcon-512 private key expanded once (B0 matrix and LDL tree, about 56 KiB of native memory)
 * and kept for many signatures. Owns its native memory: `close()` wipes and frees it.
 *
 * @example Signing twice with one expansion
 * ```ts
 * import { FalconSigner, falconVerify, generateFalconKeyPair } from "./falcon.ts";
 * const keys = generateFalconKeyPair();
 * using signer = FalconSigner.open(keys.secretKey);
 * const msg = new TextEncoder().encode("hello");
 * console.log(falconVerify(signer.sign(msg), msg, keys.publicKey)); // true
 * console.log(falconVerify(signer.sign(msg), msg, keys.publicKey)); // true
 * ```
 */
export class FalconSigner implements Disposable {
  #key: Deno.PointerObject | null;
  readonly #token = {};

  private constructor(key: Deno.PointerObject) {
    this.#key = key;
    _finalizer.register(this, key, this.#token);
  }

  /**
   * Expands a secret key.
   *
   * @param secretKey The 1281-byte Falcon-512 secret key.
   * @param opts Which PQClean build signs.
   * @returns The signer.
   * @throws {TypeError} When the key is malformed.
   * @throws {StoqError} `LIBRARY_NOT_FOUND` when `libstoq_falcon.so` is not built.
   */
  static open(secretKey: Uint8Array, opts: FalconOptions = {}): FalconSigner {
    if (
      !(secretKey instanceof Uint8Array) ||
      secretKey.length !== SECRET_KEY_BYTES
    ) {
      throw new TypeError(
        `Cannot open Falcon key as 'secretKey' must be ${SECRET_KEY_BYTES} bytes: current length is ${secretKey?.length}`,
      );
    }
    const lib = openFalconLibrary();
    const variant = _variant(opts);
    const key = lib.stoq_falcon_key_open(
      variant,
      secretKey,
      BigInt(secretKey.length),
    );
    if (key === null) {
      if (variant === FalconVariant.avx2 && lib.stoq_falcon_variant() !== 2) {
        throw _unavailable(variant);
      }
      throw new TypeError(
        "Cannot open Falcon key as 'secretKey' is not a valid Falcon-512 secret key",
      );
    }
    return new FalconSigner(key);
  }

  /** Which PQClean build signs. */
  get variant(): FalconVariantName {
    return openFalconLibrary().stoq_falcon_key_variant(this.#open()) === 2
      ? "avx2"
      : "portable";
  }

  #open(): Deno.PointerObject {
    if (this.#key === null) {
      throw new StoqError("CLOSED", "The Falcon signer is closed");
    }
    return this.#key;
  }

  /**
   * Signs a message (detached signature, at most 752 bytes).
   *
   * @param message The bytes to sign.
   * @param random Where the nonce and sampler seed come from.
   * @returns The signature.
   * @throws {StoqError} `CLOSED` after `close()`.
   */
  sign(message: Uint8Array, random: RandomSource = SYSTEM_RANDOM): Uint8Array {
    const key = this.#open();
    const lib = openFalconLibrary();
    const sig = new Uint8Array(SIGNATURE_MAX);
    const rnd = new Uint8Array(RANDOM_BYTES);
    // -2 (a signature too long for its encoding) is vanishingly rare; fresh randomness fixes it.
    for (let attempt = 0; attempt < 4; attempt++) {
      const n = lib.stoq_falcon_sign(
        key,
        random(rnd),
        message,
        BigInt(message.length),
        sig,
      );
      if (n > 0) return sig.slice(0, n);
      if (n !== -2) break;
    }
    throw new StoqError("NATIVE_ERROR", "Falcon signing failed");
  }

  /** Wipes and frees the expanded key; idempotent. */
  close(): void {
    if (this.#key === null) return;
    _finalizer.unregister(this.#token);
    openFalconLibrary().stoq_falcon_key_close(this.#key);
    this.#key = null;
  }

  /** Same as {@linkcode FalconSigner.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Signs a message with Falcon-512, expanding the key for this one signature (keep a
 * {@linkcode FalconSigner} to sign many).
 *
 * @param message The bytes to sign.
 * @param secretKey The Falcon secret key.
 * @param random Where the nonce and sampler seed come from.
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
  random: RandomSource = SYSTEM_RANDOM,
): Uint8Array {
  using signer = FalconSigner.open(secretKey);
  return signer.sign(message, random);
}

/**
 * Verifies a Falcon-512 signature with `@noble/post-quantum` (pure TypeScript, independent of the
 * native signer); malformed input verifies as `false` rather than throwing.
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

/** The covered fields of a finished certificate. */
function _certificateFields(
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
 * import { CertificateAuthority, MemoryCaStore } from "../mod.ts";
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
