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
import { generateFalconKeyPair } from "./falcon.ts";
import type { RandomSource } from "./random.ts";
import * as der from "./_der.ts";
import { buf, bytesToHex, fromBase64, toBase64 } from "./_bytes.ts";

/** The identity record format this TrustChain writes and reads. */
export const IDENTITY_FORMAT = 2;

/** The CA's long-lived keys and root certificate, as stored. */
export interface CaIdentityRecord {
  /**
   * The record format; 2 since logs are RFC 6962 (ECDSA P-256 log key). Earlier records
   * (Ed25519 log key) are refused.
   */
  format?: number;
  /** The CA name. */
  name: string;
  /** The log origin. */
  origin: string;
  /** Base64 DER of the self-signed root certificate. */
  rootDer: string;
  /** Base64 PKCS#8 of the root's ECDSA P-256 private key. */
  rootKey: string;
  /** Base64 PKCS#8 of the log's ECDSA P-256 private key. */
  logKey: string;
  /** Base64 DER SubjectPublicKeyInfo of the log key. */
  logPublicKey: string;
  /** Base64 Falcon-512 secret key. */
  falconSecretKey: string;
  /** Base64 Falcon-512 public key. */
  falconPublicKey: string;
}

/** A loaded identity. */
export interface CaIdentity {
  /** The root certificate. */
  root: x509.X509Certificate;
  /** The root certificate DER. */
  rootDer: Uint8Array;
  /** The root's private key (WebCrypto: CRLs, statuses, endorsements). */
  rootKey: CryptoKey;
  /** The root's key as a synchronous signer (certificates). */
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
}

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const EC_SIGN = { ...EC, hash: "SHA-256" } as const;

/**
 * Makes a new CA identity.
 *
 * @param name The CA name (the root's CN, at most 64 characters).
 * @param origin The log origin.
 * @param now When the root becomes valid.
 * @param rootLifetimeMs The root's lifetime.
 * @param random The random source: root, log and Falcon keys, root serial.
 * @returns The record to store.
 */
export async function createIdentityRecord(
  name: string,
  origin: string,
  now: Date,
  rootLifetimeMs: number,
  random: RandomSource,
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
  return {
    format: IDENTITY_FORMAT,
    name,
    origin,
    rootDer: toBase64(new Uint8Array(root.rawData)),
    rootKey: toBase64(rootKey.pkcs8),
    logKey: toBase64(logKeys.privateKey),
    logPublicKey: toBase64(logKeys.spki),
    falconSecretKey: toBase64(logKeys.falcon.secretKey),
    falconPublicKey: toBase64(logKeys.falcon.publicKey),
  };
}

/**
 * Loads a stored identity.
 *
 * @param record The stored record.
 * @param random Hedging bytes for the root's ECDSA signatures.
 * @returns The identity.
 * @throws {StoqError} `STORE_ERROR` when the record is from another format or unusable.
 */
export async function loadIdentity(
  record: CaIdentityRecord,
  random: RandomSource,
): Promise<CaIdentity> {
  if (record.format !== IDENTITY_FORMAT) {
    throw new StoqError(
      "STORE_ERROR",
      `This store holds a CA in identity format ${
        record.format ?? 1
      } (an Ed25519 log), but this TrustChain needs format ${IDENTITY_FORMAT} (an RFC 6962 log): create a new store`,
    );
  }
  try {
    const rootPkcs8 = fromBase64(record.rootKey);
    const rootKey = await crypto.subtle.importKey(
      "pkcs8",
      buf(rootPkcs8),
      EC,
      false,
      ["sign"],
    );
    const spki = fromBase64(record.logPublicKey);
    const rootDer = fromBase64(record.rootDer);
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
      rootKey,
      rootSigner: p256Signer(rootPkcs8, random),
      issuerName: new Uint8Array(root.subjectName.toArrayBuffer()),
      rootKeyId,
      issuerKeyHash: sha256(parts.spki),
      issuerFingerprint: sha256(rootDer),
      logKeys: {
        privateKey: fromBase64(record.logKey),
        spki,
        falcon: {
          secretKey: fromBase64(record.falconSecretKey),
          publicKey: fromBase64(record.falconPublicKey),
        },
      },
    };
  } catch (cause) {
    throw new StoqError(
      "STORE_ERROR",
      `The stored identity of CA ${record.name} cannot be loaded: restore it from a backup`,
      { cause },
    );
  }
}
