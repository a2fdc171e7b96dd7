/**
 * Private keys at rest wrapped with a passphrase (scrypt) or a key file (HKDF-SHA256), then
 * AES-256-GCM with the key's role as associated data, so a wrapped key cannot be moved to another
 * role or CA.
 *
 * @module
 */

import { scryptAsync } from "npm:@noble/hashes@2.4.0/scrypt.js";
import { hkdf } from "npm:@noble/hashes@2.4.0/hkdf.js";
import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { StoqError } from "../../errors.ts";
import type { RandomSource } from "./random.ts";
import {
  buf,
  concatBytes,
  fromBase64,
  toBase64,
  utf8ToBytes,
} from "./_bytes.ts";

/** How the wrapping key is derived; stored beside the wrapped keys. */
export type KeyWrapping =
  | {
    /** scrypt over a passphrase. */
    kdf: "scrypt";
    /** Base64 16-byte salt. */
    salt: string;
    /** scrypt cost (a power of two, 2^14..2^20). */
    n: number;
    /** scrypt block size (8). */
    r: number;
    /** scrypt parallelism (1). */
    p: number;
  }
  | {
    /** HKDF-SHA256 over a key file's contents. */
    kdf: "hkdf-sha256";
    /** Base64 16-byte salt. */
    salt: string;
  };

/** The secret that unwraps a CA's keys: a passphrase or the contents of a key file. */
export type KeySecret =
  | { passphrase: string; keyFile?: undefined }
  | { keyFile: Uint8Array; passphrase?: undefined };

/** scrypt cost for new wrappings: about 0.1 s and 32 MiB here. */
const SCRYPT_N = 2 ** 15;
/** A key file must hold at least this many bytes. */
export const MIN_KEY_FILE_BYTES = 32;
const PREFIX = "aes256gcm:";

/**
 * A new wrapping description for `secret`.
 *
 * @param secret The passphrase or key file.
 * @param random The salt's source.
 * @returns The description to store.
 */
export function newKeyWrapping(
  secret: KeySecret,
  random: RandomSource,
): KeyWrapping {
  const salt = toBase64(random(new Uint8Array(16)));
  return secret.passphrase !== undefined
    ? { kdf: "scrypt", salt, n: SCRYPT_N, r: 8, p: 1 }
    : { kdf: "hkdf-sha256", salt };
}

/** Whether a stored wrapping description is one this module derives keys for (and in bounds). */
export function isKeyWrapping(value: unknown): value is KeyWrapping {
  if (typeof value !== "object" || value === null) return false;
  const w = value as Record<string, unknown>;
  if (typeof w.salt !== "string" || !/^[A-Za-z0-9+/]{22}==$/.test(w.salt)) {
    return false;
  }
  if (w.kdf === "hkdf-sha256") return Object.keys(w).length === 2;
  return w.kdf === "scrypt" && Object.keys(w).length === 5 &&
    typeof w.n === "number" && Number.isInteger(Math.log2(w.n)) &&
    w.n >= 2 ** 14 && w.n <= 2 ** 20 && w.r === 8 && w.p === 1;
}

/**
 * Derives the AES-256-GCM wrapping key.
 *
 * @param secret The passphrase or key file.
 * @param wrapping The stored description.
 * @returns The key.
 * @throws {StoqError} `CA_LOCKED` when the secret is of the other kind.
 */
export async function wrappingKey(
  secret: KeySecret,
  wrapping: KeyWrapping,
): Promise<CryptoKey> {
  const salt = fromBase64(wrapping.salt);
  let raw: Uint8Array;
  if (wrapping.kdf === "scrypt") {
    if (secret.passphrase === undefined) {
      throw new StoqError(
        "CA_LOCKED",
        "The CA's keys are wrapped with a passphrase: open it with 'passphrase'",
      );
    }
    raw = await scryptAsync(utf8ToBytes(secret.passphrase), salt, {
      N: wrapping.n,
      r: wrapping.r,
      p: wrapping.p,
      dkLen: 32,
    });
  } else {
    if (secret.keyFile === undefined) {
      throw new StoqError(
        "CA_LOCKED",
        "The CA's keys are wrapped with a key file: open it with 'keyFile'",
      );
    }
    raw = hkdf(
      sha256,
      secret.keyFile,
      salt,
      utf8ToBytes("stoq.trustchain/key-wrap/v1"),
      32,
    );
  }
  const key = await crypto.subtle.importKey(
    "raw",
    buf(raw),
    "AES-GCM",
    false,
    ["encrypt", "decrypt"],
  );
  raw.fill(0);
  return key;
}

/**
 * Wraps a private key.
 *
 * @param key The wrapping key.
 * @param plaintext The private key bytes.
 * @param role What the key is (associated data), e.g. `ca-1/root`.
 * @param random The IV's source.
 * @returns `aes256gcm:<base64 iv || ciphertext>`.
 */
export async function wrapKey(
  key: CryptoKey,
  plaintext: Uint8Array,
  role: string,
  random: RandomSource,
): Promise<string> {
  const iv = random(new Uint8Array(12));
  const ct = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: buf(iv), additionalData: utf8ToBytes(role) },
      key,
      buf(plaintext),
    ),
  );
  return PREFIX + toBase64(concatBytes(iv, ct));
}

/**
 * Unwraps a private key.
 *
 * @param key The wrapping key.
 * @param wrapped From {@linkcode wrapKey}.
 * @param role The role it was wrapped for.
 * @returns The private key bytes.
 * @throws {StoqError} `CA_LOCKED` when it does not decrypt (a wrong passphrase or key file).
 */
export async function unwrapKey(
  key: CryptoKey,
  wrapped: string,
  role: string,
): Promise<Uint8Array> {
  try {
    if (!wrapped.startsWith(PREFIX)) throw new TypeError("not a wrapped key");
    const raw = fromBase64(wrapped.slice(PREFIX.length));
    return new Uint8Array(
      await crypto.subtle.decrypt(
        {
          name: "AES-GCM",
          iv: buf(raw.subarray(0, 12)),
          additionalData: utf8ToBytes(role),
        },
        key,
        buf(raw.subarray(12)),
      ),
    );
  } catch (cause) {
    throw new StoqError(
      "CA_LOCKED",
      "The CA's private keys do not unwrap: check the passphrase or key file",
      { cause },
    );
  }
}
