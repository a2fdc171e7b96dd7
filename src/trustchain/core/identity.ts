/**
 * A CA's long-lived identity: its self-signed ECDSA P-256 root, the log's ECDSA P-256 key (SCTs and
 * tree heads) and the Falcon-512 key that co-signs; made once, stored as a
 * {@linkcode CaIdentityRecord} and loaded at every open.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { StoqError } from "../../errors.ts";
import { generateLogKeys, type LogKeys } from "./ct_log.ts";
import { type EcdsaSigner, newP256Pkcs8, p256Signer } from "./ecdsa.ts";
import {
  type FalconSigner,
  falconVerify,
  generateFalconKeyPair,
} from "./falcon.ts";
import { sealVerifies, storeMacKey } from "./integrity.ts";
import {
  isKeyWrapping,
  type KeySecret,
  type KeyWrapping,
  newKeyWrapping,
  unwrapKey,
  wrapKey,
  wrappingKey,
} from "./key_wrap.ts";
import { type RandomSource, SYSTEM_RANDOM } from "./random.ts";
import * as der from "./_der.ts";
import {
  buf,
  bytesToHex,
  equalBytes,
  framed,
  fromBase64,
  toBase64,
  utf8ToBytes,
} from "./_bytes.ts";

/** The identity record format this TrustChain writes and reads. */
export const IDENTITY_FORMAT = 3;

/**
 * The seal over an identity record: a SHA-256 digest per component and the root key's signature
 * over all of them, so a change is detected with the root certificate alone (before any private
 * key is unwrapped) and named.
 */
export interface IdentitySeal {
  /** Base64 SHA-256 of each component (see {@linkcode IDENTITY_COMPONENTS}). */
  digests: Record<IdentityComponent, string>;
  /** Base64 ECDSA P-256 signature (`r || s`) by the root key over the digests. */
  signature: string;
}

/** The parts of an identity the seal names when one of them changed. */
export type IdentityComponent =
  | "identity"
  | "rootKey"
  | "logKey"
  | "falconKey"
  | "keyWrapping";

/** What each sealed component is, for error messages. */
export const IDENTITY_COMPONENTS: Readonly<Record<IdentityComponent, string>> =
  {
    identity: "CA name, log origin or root certificate",
    rootKey: "root private key",
    logKey: "log key",
    falconKey: "Falcon key",
    keyWrapping: "key wrapping parameters",
  };

/** The CA's long-lived keys and root certificate, as stored. */
export interface CaIdentityRecord {
  /** The record format, 3 since records are sealed (earlier records are refused). */
  format: number;
  /** The CA name. */
  name: string;
  /** The log origin. */
  origin: string;
  /** Base64 DER of the self-signed root certificate. */
  rootDer: string;
  /** The root's ECDSA P-256 private key: base64 PKCS#8, or wrapped (`aes256gcm:…`). */
  rootKey: string;
  /** The log's ECDSA P-256 private key: base64 PKCS#8, or wrapped. */
  logKey: string;
  /** Base64 DER SubjectPublicKeyInfo of the log key. */
  logPublicKey: string;
  /** The Falcon-512 secret key: base64, or wrapped. */
  falconSecretKey: string;
  /** Base64 Falcon-512 public key. */
  falconPublicKey: string;
  /** How the private keys are wrapped; absent when they are stored in the clear. */
  keyWrapping?: KeyWrapping;
  /** The root key's seal over every field. */
  seal: IdentitySeal;
}

/** A loaded identity. */
export interface CaIdentity {
  /** The root certificate. */
  root: x509.X509Certificate;
  /** The root certificate DER. */
  rootDer: Uint8Array;
  /** The root's SubjectPublicKeyInfo DER. */
  rootSpki: Uint8Array;
  /** The root's private key (WebCrypto: CRLs, statuses, endorsements). */
  rootKey: CryptoKey;
  /** The root's key as a synchronous signer (certificates, seals). */
  rootSigner: EcdsaSigner;
  /** The root's subject Name DER (the issuer of every leaf). */
  issuerName: Uint8Array;
  /** The root's key identifier (the leaves' authorityKeyIdentifier). */
  rootKeyId: Uint8Array;
  /** SHA-256 of the root's SubjectPublicKeyInfo (the log entries' issuer key hash). */
  issuerKeyHash: Uint8Array;
  /** SHA-256 of the root certificate (the log entries' chain fingerprint). */
  issuerFingerprint: Uint8Array;
  /** The log's keys. */
  logKeys: LogKeys;
  /** The key that authenticates the CA's rows (see `storeMacKey`). */
  macKey: Uint8Array;
}

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const EC_SIGN = { ...EC, hash: "SHA-256" } as const;
const SEAL_LABEL = utf8ToBytes("stoq.trustchain/identity/v3");
const COMPONENTS = Object.keys(IDENTITY_COMPONENTS) as IdentityComponent[];

function _tampered(what: string, cause?: unknown): StoqError {
  return new StoqError(
    "CA_TAMPERED",
    `The CA's identity record fails its integrity check (${what}): restore the store from a backup`,
    cause === undefined ? {} : { cause },
  );
}

/** The digest of each sealed component of a record. */
function _digests(
  r: Omit<CaIdentityRecord, "seal">,
): Record<IdentityComponent, Uint8Array> {
  const t = utf8ToBytes;
  const w = r.keyWrapping;
  return {
    identity: sha256(
      framed(t(String(r.format)), t(r.name), t(r.origin), t(r.rootDer)),
    ),
    rootKey: sha256(t(r.rootKey)),
    logKey: sha256(framed(t(r.logKey), t(r.logPublicKey))),
    falconKey: sha256(framed(t(r.falconSecretKey), t(r.falconPublicKey))),
    keyWrapping: sha256(
      w === undefined
        ? new Uint8Array(0)
        : w.kdf === "scrypt"
        ? framed(t(w.kdf), t(w.salt), t(`${w.n}/${w.r}/${w.p}`))
        : framed(t(w.kdf), t(w.salt)),
    ),
  };
}

function _sealMessage(digests: Record<IdentityComponent, Uint8Array>) {
  return framed(SEAL_LABEL, ...COMPONENTS.map((c) => digests[c]));
}

function _role(name: string, key: string): string {
  return `stoq.trustchain/${name}/${key}`;
}

/**
 * Makes a new CA identity, sealed by its root key.
 *
 * @param name The CA name (the root's CN, at most 64 characters).
 * @param origin The log origin.
 * @param now When the root becomes valid.
 * @param rootLifetimeMs The root's lifetime.
 * @param random The random source: root, log and Falcon keys, root serial, wrapping salt and IVs.
 * @param secret A passphrase or key file to wrap the private keys with.
 * @returns The record to store.
 */
export async function createIdentityRecord(
  name: string,
  origin: string,
  now: Date,
  rootLifetimeMs: number,
  random: RandomSource,
  secret?: KeySecret,
): Promise<CaIdentityRecord> {
  const rootKey = newP256Pkcs8(random);
  const keys: CryptoKeyPair = {
    privateKey: await crypto.subtle.importKey(
      "pkcs8",
      buf(rootKey.pkcs8),
      EC,
      false,
      ["sign"],
    ),
    publicKey: await crypto.subtle.importKey(
      "spki",
      buf(rootKey.spki),
      EC,
      true,
      ["verify"],
    ),
  };
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000);
  // A positive serial of at most 16 bytes: the top bit clear, never zero.
  const serial = random(new Uint8Array(16));
  serial[0] = (serial[0] & 0x7f) | 0x01;
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: bytesToHex(serial),
    name: `CN=${name}, O=STOQ TrustChain`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + rootLifetimeMs),
    keys,
    signingAlgorithm: EC_SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign |
          x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const logKeys = await generateLogKeys(generateFalconKeyPair(random), random);
  const record = await sealIdentity(
    {
      name,
      origin,
      rootDer: new Uint8Array(root.rawData),
      rootPkcs8: rootKey.pkcs8,
      logKeys,
    },
    random,
    secret,
  );
  rootKey.pkcs8.fill(0);
  return record;
}

/** The keys and root an identity record is made of, before sealing. */
export interface IdentityKeys {
  /** The CA name. */
  name: string;
  /** The log origin. */
  origin: string;
  /** The root certificate DER. */
  rootDer: Uint8Array;
  /** The root's PKCS#8 private key. */
  rootPkcs8: Uint8Array;
  /** The log's keys. */
  logKeys: LogKeys;
}

/**
 * Makes the stored record of an identity: wraps its private keys when a secret is given, and
 * seals every component with the root key.
 *
 * @param keys The keys and root.
 * @param random Hedging, salt and IV bytes.
 * @param secret A passphrase or key file to wrap the private keys with.
 * @returns The record.
 */
export async function sealIdentity(
  keys: IdentityKeys,
  random: RandomSource,
  secret?: KeySecret,
): Promise<CaIdentityRecord> {
  const { name, logKeys } = keys;
  let protect = (bytes: Uint8Array, _role: string) =>
    Promise.resolve(toBase64(bytes));
  let keyWrapping: KeyWrapping | undefined;
  if (secret) {
    keyWrapping = newKeyWrapping(secret, random);
    const kek = await wrappingKey(secret, keyWrapping);
    protect = (bytes, role) => wrapKey(kek, bytes, _role(name, role), random);
  }
  const unsealed: Omit<CaIdentityRecord, "seal"> = {
    format: IDENTITY_FORMAT,
    name,
    origin: keys.origin,
    rootDer: toBase64(keys.rootDer),
    rootKey: await protect(keys.rootPkcs8, "root"),
    logKey: await protect(logKeys.privateKey, "log"),
    logPublicKey: toBase64(logKeys.spki),
    falconSecretKey: await protect(logKeys.falcon.secretKey, "falcon"),
    falconPublicKey: toBase64(logKeys.falcon.publicKey),
    ...(keyWrapping ? { keyWrapping } : {}),
  };
  const digests = _digests(unsealed);
  const signature = p256Signer(keys.rootPkcs8, random).sign(
    _sealMessage(digests),
  );
  return {
    ...unsealed,
    seal: {
      digests: Object.fromEntries(
        COMPONENTS.map((c) => [c, toBase64(digests[c])]),
      ) as Record<IdentityComponent, string>,
      signature: toBase64(signature),
    },
  };
}

/**
 * Reads an identity record of format 2 (TrustChain before sealed records): its keys in the clear,
 * checked against their public keys, for migrating the store that holds it.
 *
 * @param text The stored JSON.
 * @returns The keys and root, or `undefined` when the record is not of format 2.
 * @throws {StoqError} `CA_TAMPERED` when it is a malformed format 2 record.
 */
export function decodeLegacyIdentity(text: string): IdentityKeys | undefined {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof r !== "object" || r === null || r.format !== 2) return undefined;
  try {
    const field = (f: string) => {
      if (typeof r[f] !== "string") throw new TypeError(`'${f}' is missing`);
      return r[f] as string;
    };
    const rootDer = fromBase64(field("rootDer"));
    const rootPkcs8 = fromBase64(field("rootKey"));
    const logPkcs8 = fromBase64(field("logKey"));
    const logSpki = fromBase64(field("logPublicKey"));
    const rootSpki = der.certificateParts(rootDer).spki;
    if (!equalBytes(p256Signer(rootPkcs8, SYSTEM_RANDOM).spki, rootSpki)) {
      throw new TypeError("the root key does not match the root certificate");
    }
    if (!equalBytes(p256Signer(logPkcs8, SYSTEM_RANDOM).spki, logSpki)) {
      throw new TypeError("the log key does not match its public key");
    }
    return {
      name: field("name"),
      origin: field("origin"),
      rootDer,
      rootPkcs8,
      logKeys: {
        privateKey: logPkcs8,
        spki: logSpki,
        falcon: {
          secretKey: fromBase64(field("falconSecretKey")),
          publicKey: fromBase64(field("falconPublicKey")),
        },
      },
    };
  } catch (cause) {
    throw _tampered("a format 2 record that does not load", cause);
  }
}

/**
 * The stored form of an identity record.
 *
 * @param record The record.
 * @returns JSON text.
 */
export function encodeIdentityRecord(record: CaIdentityRecord): string {
  return JSON.stringify(record);
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** Canonical base64 only: one spelling per value, so the record has one stored form. */
const _isB64 = (v: unknown): boolean => {
  if (typeof v !== "string" || v.length % 4 !== 0 || !B64.test(v)) return false;
  try {
    return toBase64(fromBase64(v)) === v;
  } catch {
    return false;
  }
};
const _isKey = (v: unknown): boolean =>
  typeof v === "string" &&
  (_isB64(v) || (v.startsWith("aes256gcm:") && _isB64(v.slice(10))));

/**
 * Decodes a stored identity record, checking its shape (not yet its seal).
 *
 * @param text The stored JSON.
 * @returns The record.
 * @throws {StoqError} `CA_TAMPERED` when it is not a well-formed record; `STORE_ERROR` when it is
 * a well-formed record of an earlier format.
 */
export function decodeIdentityRecord(text: string): CaIdentityRecord {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(text);
  } catch (cause) {
    throw _tampered("it is not JSON: truncated or overwritten", cause);
  }
  if (typeof r !== "object" || r === null || Array.isArray(r)) {
    throw _tampered("it is not a JSON object");
  }
  const known = new Set([
    "format",
    "name",
    "origin",
    "rootDer",
    "rootKey",
    "logKey",
    "logPublicKey",
    "falconSecretKey",
    "falconPublicKey",
    "keyWrapping",
    "seal",
  ]);
  const unknown = Object.keys(r).find((k) => !known.has(k));
  if (r.format === IDENTITY_FORMAT && unknown !== undefined) {
    throw _tampered(`it holds an unknown field ${JSON.stringify(unknown)}`);
  }
  if (r.format !== IDENTITY_FORMAT) {
    if (r.format === undefined || r.format === 2) {
      throw new StoqError(
        "STORE_ERROR",
        `This store holds a CA in identity format ${
          r.format ?? 1
        }, written by an earlier TrustChain (no sealed identity, no stored tree), but this TrustChain needs format ${IDENTITY_FORMAT}: create a new store`,
      );
    }
    throw _tampered(`unknown format ${JSON.stringify(r.format)}`);
  }
  for (const f of ["name", "origin"] as const) {
    if (typeof r[f] !== "string" || (r[f] as string).length === 0) {
      throw _tampered(`'${f}' is missing or not a string`);
    }
  }
  for (const f of ["rootDer", "logPublicKey", "falconPublicKey"] as const) {
    if (!_isB64(r[f])) throw _tampered(`'${f}' is not base64`);
  }
  for (const f of ["rootKey", "logKey", "falconSecretKey"] as const) {
    if (!_isKey(r[f])) throw _tampered(`'${f}' is not a stored key`);
  }
  if (r.keyWrapping !== undefined && !isKeyWrapping(r.keyWrapping)) {
    throw _tampered("'keyWrapping' is malformed");
  }
  const seal = r.seal as Record<string, unknown> | null;
  const digests = seal?.digests as Record<string, unknown> | null | undefined;
  if (
    typeof seal !== "object" || seal === null || !_isB64(seal.signature) ||
    Object.keys(seal).length !== 2 ||
    typeof digests !== "object" || digests === null ||
    Object.keys(digests).length !== COMPONENTS.length ||
    !COMPONENTS.every((c) => _isB64(digests[c]))
  ) {
    throw _tampered("its seal is missing or malformed");
  }
  return r as unknown as CaIdentityRecord;
}

/**
 * Verifies a record's seal: the root key's signature over the component digests, and each
 * component against its digest.
 *
 * @param record A decoded record.
 * @returns The root certificate's DER and SubjectPublicKeyInfo.
 * @throws {StoqError} `CA_TAMPERED` naming the component that changed.
 */
export function verifyIdentitySeal(
  record: CaIdentityRecord,
): { rootDer: Uint8Array; rootSpki: Uint8Array } {
  let rootDer: Uint8Array;
  let rootSpki: Uint8Array;
  try {
    rootDer = fromBase64(record.rootDer);
    rootSpki = der.certificateParts(rootDer).spki;
  } catch (cause) {
    throw _tampered("the root certificate does not parse", cause);
  }
  let stored: Record<IdentityComponent, Uint8Array>;
  try {
    stored = Object.fromEntries(
      COMPONENTS.map((c) => [c, fromBase64(record.seal.digests[c])]),
    ) as Record<IdentityComponent, Uint8Array>;
  } catch (cause) {
    throw _tampered("its seal is malformed", cause);
  }
  if (
    !sealVerifies(
      rootSpki,
      _sealMessage(stored),
      fromBase64(record.seal.signature),
    )
  ) {
    throw _tampered(
      "the seal's signature does not verify with the root certificate: the root certificate or the seal was replaced",
    );
  }
  const actual = _digests(record);
  for (const c of COMPONENTS) {
    if (!equalBytes(actual[c], stored[c])) {
      throw _tampered(`the ${IDENTITY_COMPONENTS[c]} changed`);
    }
  }
  return { rootDer, rootSpki };
}

/**
 * Loads a stored identity: verifies its seal, unwraps its keys and checks each private key against
 * its public key.
 *
 * @param record A decoded record.
 * @param random Hedging bytes for the root's ECDSA signatures.
 * @param secret The passphrase or key file, when the keys are wrapped.
 * @returns The identity.
 * @throws {StoqError} `CA_TAMPERED` naming what changed; `CA_LOCKED` when the keys are wrapped and
 * the secret is missing or wrong; `INVALID_ARGUMENT` when a secret is given for keys stored in the
 * clear.
 */
export async function loadIdentity(
  record: CaIdentityRecord,
  random: RandomSource,
  secret?: KeySecret,
): Promise<CaIdentity> {
  const { rootDer, rootSpki } = verifyIdentitySeal(record);
  let open = (text: string, _role: string) => Promise.resolve(fromBase64(text));
  if (record.keyWrapping) {
    if (!secret) {
      throw new StoqError(
        "CA_LOCKED",
        `The private keys of CA ${record.name} are wrapped: open it with its ${
          record.keyWrapping.kdf === "scrypt" ? "'passphrase'" : "'keyFile'"
        }`,
      );
    }
    const kek = await wrappingKey(secret, record.keyWrapping);
    open = (text, role) => unwrapKey(kek, text, _role(record.name, role));
  } else if (secret) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `The private keys of CA ${record.name} are not wrapped: open it without 'passphrase' or 'keyFile' (keys are wrapped when the CA is created)`,
    );
  } else if (
    [record.rootKey, record.logKey, record.falconSecretKey].some((k) =>
      k.startsWith("aes256gcm:")
    )
  ) {
    throw _tampered("a wrapped key is stored without wrapping parameters");
  }
  const rootPkcs8 = await open(record.rootKey, "root");
  const logPkcs8 = await open(record.logKey, "log");
  const falconSecret = await open(record.falconSecretKey, "falcon");
  const pair = (what: string, pkcs8: Uint8Array, spki: Uint8Array) => {
    let signer: EcdsaSigner | undefined;
    try {
      signer = p256Signer(pkcs8, random);
    } catch {
      // reported below
    }
    if (!signer || !equalBytes(signer.spki, spki)) {
      throw _tampered(`the ${what} does not match its public key`);
    }
    return signer;
  };
  const rootSigner = pair("root private key", rootPkcs8, rootSpki);
  const logSpki = fromBase64(record.logPublicKey);
  pair("log key", logPkcs8, logSpki);
  try {
    const rootKey = await crypto.subtle.importKey(
      "pkcs8",
      buf(rootPkcs8),
      EC,
      false,
      ["sign"],
    );
    const root = new x509.X509Certificate(buf(rootDer));
    const parts = der.certificateParts(rootDer);
    const ski = parts.extensions.find((e) =>
      bytesToHex(e.oid) === bytesToHex(der.oid("2.5.29.14"))
    );
    const rootKeyId = ski
      ? ski.value.subarray(der.readTlv(ski.value, 0).header)
      : der.keyIdentifier(parts.spki);
    if (!rootKeyId) throw new TypeError("the root has no key identifier");
    return {
      root,
      rootDer,
      rootSpki,
      rootKey,
      rootSigner,
      issuerName: new Uint8Array(root.subjectName.toArrayBuffer()),
      rootKeyId,
      issuerKeyHash: sha256(parts.spki),
      issuerFingerprint: sha256(rootDer),
      logKeys: {
        privateKey: logPkcs8,
        spki: logSpki,
        falcon: {
          secretKey: falconSecret,
          publicKey: fromBase64(record.falconPublicKey),
        },
      },
      macKey: storeMacKey(logPkcs8),
    };
  } catch (cause) {
    throw _tampered("the root certificate or key is unusable", cause);
  }
}

/**
 * Checks that an opened Falcon signer belongs to the identity's Falcon public key.
 *
 * @param signer The signer opened from the stored secret key.
 * @param publicKey The stored public key.
 * @param random The signature's randomness.
 * @throws {StoqError} `CA_TAMPERED` when it does not.
 */
export function checkFalconPair(
  signer: FalconSigner,
  publicKey: Uint8Array,
  random: RandomSource,
): void {
  const probe = utf8ToBytes("stoq.trustchain/falcon-key-check");
  if (!falconVerify(signer.sign(probe, random), probe, publicKey)) {
    throw _tampered("the Falcon secret key does not match its public key");
  }
}
