/**
 * C2SP signed notes and tlog checkpoints.
 *
 * A note is `<body>\n<signature lines>` where the body ends in a newline and each signature line is
 * `— <key name> <base64(4-byte key ID || signature)>\n`. Three key types are supported:
 *
 * - `0x05` ({@linkcode RFC6962_NOTE_TYPE}): the RFC 6962 `TreeHeadSignature` of a CT log, as
 *   C2SP static-ct-api defines it. The signature is `uint64 timestamp || DigitallySigned` (ECDSA
 *   P-256), the key ID is `SHA-256(name || 0x0A || 0x05 || log ID)[:4]` with the log ID the SHA-256
 *   of the key's DER SubjectPublicKeyInfo, and the vkey carries that SubjectPublicKeyInfo. This is
 *   the line a TrustChain log signs its checkpoints with.
 * - `0xff` ({@linkcode FALCON_NOTE_TYPE}) followed by the identifier
 *   {@linkcode FALCON_NOTE_IDENTIFIER} (`stoq.trustchain/falcon-512`), as the signed-note spec
 *   recommends for types without an assigned byte: Falcon-512 over the note text. The key ID is
 *   `SHA-256(name || 0x0A || 0xff || identifier || public key)[:4]`, and the vkey carries
 *   `0xff || identifier || public key`. Verifiers that do not know the key skip the line.
 * - `0x01` ({@linkcode ED25519_NOTE_TYPE}): Ed25519, as the signed-note spec defines it (for
 *   witnesses and other notes).
 *
 * @module
 */

import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { StoqError } from "../../errors.ts";
import { FalconSigner, falconVerify } from "./falcon.ts";
import { type RandomSource, SYSTEM_RANDOM } from "./random.ts";
import type { EcdsaSigner } from "./ecdsa.ts";
import { isP256Spki } from "./_der.ts";
import {
  importLogKey,
  logIdOf,
  signTreeHead,
  verifyTreeHead,
} from "./rfc6962.ts";
import {
  buf,
  bytesToHex,
  concatBytes,
  equalBytes,
  fromBase64,
  toBase64,
  utf8ToBytes,
} from "./_bytes.ts";

/** Signature type byte of Ed25519 note keys (C2SP signed-note). */
export const ED25519_NOTE_TYPE = 0x01;
/** Signature type byte of RFC 6962 tree head signatures (C2SP static-ct-api). */
export const RFC6962_NOTE_TYPE = 0x05;
/** Signature type byte for types without an assigned byte; STOQ's Falcon-512 keys use it. */
export const FALCON_NOTE_TYPE = 0xff;
/** The identifier that follows {@linkcode FALCON_NOTE_TYPE} in STOQ's Falcon-512 note keys. */
export const FALCON_NOTE_IDENTIFIER: Uint8Array = utf8ToBytes(
  "stoq.trustchain/falcon-512",
);

/** Signs note bodies under one key name. */
export interface NoteSigner {
  /** The key name, e.g. the log origin. */
  readonly name: string;
  /** The 4-byte key ID. */
  readonly keyHash: Uint8Array;
  /** Signs the note body. */
  sign(body: Uint8Array): Promise<Uint8Array>;
}

/** Verifies note signatures for one key name and key ID. */
export interface NoteVerifier {
  /** The key name. */
  readonly name: string;
  /** The 4-byte key ID. */
  readonly keyHash: Uint8Array;
  /** Verifies a signature over the note body. */
  verify(body: Uint8Array, signature: Uint8Array): Promise<boolean>;
}

function _checkName(name: string): void {
  if (typeof name !== "string" || name.length === 0 || /[\s+]/.test(name)) {
    throw new TypeError(
      `Cannot use note key name as 'name' must be non-empty without spaces or '+': current value is ${
        JSON.stringify(name)
      }`,
    );
  }
}

/** The key bytes after the type byte in a vkey, per key type. */
function _keyEncoding(type: number, publicKey: Uint8Array): Uint8Array {
  return type === FALCON_NOTE_TYPE
    ? concatBytes(FALCON_NOTE_IDENTIFIER, publicKey)
    : publicKey;
}

/**
 * The key ID of a note key: the first 4 bytes of `SHA-256(name || 0x0A || type || key)`, where
 * the key is the raw Ed25519 key (`0x01`), the log ID (`0x05`, per static-ct-api), or
 * {@linkcode FALCON_NOTE_IDENTIFIER} followed by the Falcon-512 public key (`0xff`).
 *
 * @param name The key name.
 * @param type The signature type byte.
 * @param publicKey The public key: raw Ed25519, DER SubjectPublicKeyInfo (`0x05`), or Falcon.
 * @returns The 4-byte key ID.
 *
 * @example Hashing an Ed25519 key
 * ```ts
 * import { noteKeyHash } from "./checkpoint.ts";
 * console.log(noteKeyHash("example.com/log", 0x01, new Uint8Array(32)).length); // 4
 * ```
 */
export function noteKeyHash(
  name: string,
  type: number,
  publicKey: Uint8Array,
): Uint8Array {
  _checkName(name);
  const key = type === RFC6962_NOTE_TYPE
    ? logIdOf(publicKey)
    : _keyEncoding(type, publicKey);
  return sha256(
    concatBytes(utf8ToBytes(name), new Uint8Array([0x0a, type]), key),
  ).slice(0, 4);
}

/**
 * The verifier-key string `<name>+<hex key ID>+<base64(type || key)>`.
 *
 * @param name The key name.
 * @param type The signature type byte.
 * @param publicKey The public key (see {@linkcode noteKeyHash}).
 * @returns The vkey string.
 *
 * @example Exporting an Ed25519 vkey
 * ```ts
 * import { noteVkey } from "./checkpoint.ts";
 * console.log(noteVkey("example.com/log", 0x01, new Uint8Array(32)).split("+").length); // 3
 * ```
 */
export function noteVkey(
  name: string,
  type: number,
  publicKey: Uint8Array,
): string {
  const hash = noteKeyHash(name, type, publicKey);
  return `${name}+${bytesToHex(hash)}+${
    toBase64(
      concatBytes(new Uint8Array([type]), _keyEncoding(type, publicKey)),
    )
  }`;
}

/**
 * An Ed25519 note signer.
 *
 * @param name The key name.
 * @param privateKey The Ed25519 private key (WebCrypto).
 * @param publicKey The raw 32-byte public key.
 * @returns The signer.
 *
 * @example Signing a note
 * ```ts
 * import { ed25519NoteSigner, signNote } from "./checkpoint.ts";
 * const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]) as CryptoKeyPair;
 * const raw = new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey));
 * const note = await signNote("hello\n", [ed25519NoteSigner("example", keys.privateKey, raw)]);
 * console.log(note.startsWith("hello\n\n— example ")); // true
 * ```
 */
export function ed25519NoteSigner(
  name: string,
  privateKey: CryptoKey,
  publicKey: Uint8Array,
): NoteSigner {
  const keyHash = noteKeyHash(name, ED25519_NOTE_TYPE, publicKey);
  return {
    name,
    keyHash,
    sign: async (body) =>
      new Uint8Array(
        await crypto.subtle.sign("Ed25519", privateKey, buf(body)),
      ),
  };
}

/**
 * An RFC 6962 tree head note signer (type `0x05`, C2SP static-ct-api): signs checkpoint bodies
 * (origin, size and root lines only) with the log's ECDSA P-256 key.
 *
 * @param name The key name (the log origin).
 * @param privateKey The log's ECDSA P-256 private key: a WebCrypto key, or an `EcdsaSigner`.
 * @param spki The log key's DER SubjectPublicKeyInfo.
 * @param now The clock for the signature's timestamp (ms since the epoch).
 * @returns The signer.
 *
 * @example Signing a checkpoint
 * ```ts
 * import { formatCheckpoint, noteVerifier, openNote, rfc6962NoteSigner, signNote } from "./checkpoint.ts";
 * const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]) as CryptoKeyPair;
 * const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
 * const body = formatCheckpoint({ origin: "example.com/log", treeSize: 0, rootHash: new Uint8Array(32) });
 * const note = await signNote(body, [rfc6962NoteSigner("example.com/log", keys.privateKey, spki)]);
 * console.log((await openNote(note, [noteVerifier("example.com/log", 0x05, spki)])).body === body); // true
 * ```
 */
export function rfc6962NoteSigner(
  name: string,
  privateKey: CryptoKey | EcdsaSigner,
  spki: Uint8Array,
  now: () => number = Date.now,
): NoteSigner {
  const sign = privateKey instanceof CryptoKey
    ? async (data: Uint8Array) =>
      new Uint8Array(
        await crypto.subtle.sign(
          { name: "ECDSA", hash: "SHA-256" },
          privateKey,
          buf(data),
        ),
      )
    : (data: Uint8Array) => privateKey.sign(data);
  return {
    name,
    keyHash: noteKeyHash(name, RFC6962_NOTE_TYPE, spki),
    sign: (body) => {
      const cp = _strictCheckpoint(body);
      return signTreeHead(sign, now(), cp.treeSize, cp.rootHash);
    },
  };
}

/** A checkpoint body with no extension lines, as `0x05` signatures require. */
function _strictCheckpoint(body: Uint8Array): Checkpoint {
  const text = new TextDecoder().decode(body);
  const cp = parseCheckpoint(text);
  if (text.split("\n").length !== 4) {
    throw new StoqError(
      "PROOF_INVALID",
      "An RFC 6962 tree head note carries no extension lines",
    );
  }
  return cp;
}

/**
 * A Falcon-512 note signer (type `0xff` with {@linkcode FALCON_NOTE_IDENTIFIER}).
 *
 * @param name The key name.
 * @param secretKey The Falcon secret key, or an open {@linkcode FalconSigner} (kept open).
 * @param publicKey The Falcon public key.
 * @param random Where signature randomness comes from.
 * @returns The signer.
 *
 * @example Co-signing with Falcon
 * ```ts
 * import { falconNoteSigner, signNote } from "./checkpoint.ts";
 * import { generateFalconKeyPair } from "./falcon.ts";
 * const keys = generateFalconKeyPair();
 * const note = await signNote("hello\n", [falconNoteSigner("example", keys.secretKey, keys.publicKey)]);
 * console.log(note.includes("— example")); // true
 * ```
 */
export function falconNoteSigner(
  name: string,
  secretKey: Uint8Array | FalconSigner,
  publicKey: Uint8Array,
  random: RandomSource = SYSTEM_RANDOM,
): NoteSigner {
  const keyHash = noteKeyHash(name, FALCON_NOTE_TYPE, publicKey);
  return {
    name,
    keyHash,
    sign: (body) => {
      if (secretKey instanceof FalconSigner) {
        return Promise.resolve(secretKey.sign(body, random));
      }
      using signer = FalconSigner.open(secretKey);
      return Promise.resolve(signer.sign(body, random));
    },
  };
}

/**
 * A note verifier from public key bytes.
 *
 * @param name The key name.
 * @param type {@linkcode ED25519_NOTE_TYPE}, {@linkcode RFC6962_NOTE_TYPE} or
 * {@linkcode FALCON_NOTE_TYPE}.
 * @param publicKey The raw Ed25519 key, the log key's DER SubjectPublicKeyInfo, or the Falcon key.
 * @returns The verifier.
 *
 * @example Verifying an Ed25519 note
 * ```ts
 * import { ed25519NoteSigner, noteVerifier, openNote, signNote } from "./checkpoint.ts";
 * const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]) as CryptoKeyPair;
 * const raw = new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey));
 * const note = await signNote("hi\n", [ed25519NoteSigner("k", keys.privateKey, raw)]);
 * console.log((await openNote(note, [noteVerifier("k", 0x01, raw)])).body); // "hi\n"
 * ```
 */
export function noteVerifier(
  name: string,
  type: number,
  publicKey: Uint8Array,
): NoteVerifier {
  const keyHash = noteKeyHash(name, type, publicKey);
  if (type === ED25519_NOTE_TYPE) {
    if (publicKey.length !== 32) {
      throw new TypeError("Cannot use Ed25519 key as it must be 32 bytes");
    }
    const key = crypto.subtle.importKey(
      "raw",
      buf(publicKey),
      "Ed25519",
      false,
      ["verify"],
    );
    return {
      name,
      keyHash,
      verify: async (body, signature) => {
        try {
          return await crypto.subtle.verify(
            "Ed25519",
            await key,
            buf(signature),
            buf(body),
          );
        } catch {
          return false;
        }
      },
    };
  }
  if (type === RFC6962_NOTE_TYPE) {
    const key = importLogKey(publicKey);
    // An unusable key fails every verification (and is reported by parseVkey up front).
    key.catch(() => {});
    return {
      name,
      keyHash,
      verify: async (body, signature) => {
        let cp: Checkpoint;
        try {
          cp = _strictCheckpoint(body);
        } catch {
          return false;
        }
        // The tree head signature does not cover the origin line; static-ct-api has the key name
        // (bound by the key ID) stand for it, so they must match.
        if (cp.origin !== name) return false;
        const at = await verifyTreeHead(
          await key,
          signature,
          cp.treeSize,
          cp.rootHash,
        ).catch(() => undefined);
        return at !== undefined;
      },
    };
  }
  if (type === FALCON_NOTE_TYPE) {
    return {
      name,
      keyHash,
      verify: (body, signature) =>
        Promise.resolve(falconVerify(signature, body, publicKey)),
    };
  }
  throw new RangeError(
    `Cannot verify notes of type ${type}: supported types are 0x01 (Ed25519), 0x05 (RFC 6962) and 0xff (Falcon-512)`,
  );
}

/**
 * Parses a vkey string (see {@linkcode noteVkey}) into a verifier.
 *
 * @param vkey The vkey string.
 * @returns The verifier.
 * @throws {StoqError} `BUNDLE_INVALID` when the string is malformed or its hash does not match.
 *
 * @example Round-tripping a vkey
 * ```ts
 * import { noteVkey, parseVkey } from "./checkpoint.ts";
 * console.log(parseVkey(noteVkey("k", 0x01, new Uint8Array(32))).name); // "k"
 * ```
 */
export function parseVkey(vkey: string): NoteVerifier {
  const { name, hash, type, publicKey } = _vkeyParts(vkey);
  let verifier: NoteVerifier;
  try {
    verifier = noteVerifier(name, type, publicKey);
  } catch (cause) {
    throw new StoqError(
      "BUNDLE_INVALID",
      "Cannot parse vkey: the key is not usable for its type",
      { cause },
    );
  }
  if (bytesToHex(verifier.keyHash) !== hash.toLowerCase()) {
    throw new StoqError(
      "BUNDLE_INVALID",
      "Cannot parse vkey: the key hash does not match the key",
    );
  }
  return verifier;
}

/** The parts of a vkey string; throws `BUNDLE_INVALID` when they are malformed (internal). */
export function _vkeyParts(
  vkey: string,
): { name: string; hash: string; type: number; publicKey: Uint8Array } {
  // Names hold no '+', but base64 keys may, so split at the first two only.
  const m = typeof vkey === "string"
    ? /^([^+]+)\+([0-9a-fA-F]{8})\+(.+)$/.exec(vkey)
    : null;
  if (!m) {
    throw new StoqError(
      "BUNDLE_INVALID",
      "Cannot parse vkey: expected <name>+<hex hash>+<base64 key>",
    );
  }
  const [, name, hash, key] = m;
  let raw: Uint8Array;
  try {
    raw = fromBase64(key);
  } catch (cause) {
    throw new StoqError(
      "BUNDLE_INVALID",
      "Cannot parse vkey: the key is not base64",
      { cause },
    );
  }
  if (raw.length < 2) {
    throw new StoqError(
      "BUNDLE_INVALID",
      "Cannot parse vkey: the key is empty",
    );
  }
  const type = raw[0];
  let publicKey = raw.subarray(1);
  if (type === FALCON_NOTE_TYPE) {
    const id = publicKey.subarray(0, FALCON_NOTE_IDENTIFIER.length);
    if (!equalBytes(id, FALCON_NOTE_IDENTIFIER)) {
      throw new StoqError(
        "BUNDLE_INVALID",
        "Cannot parse vkey: a 0xff key must carry the identifier stoq.trustchain/falcon-512",
      );
    }
    publicKey = publicKey.subarray(FALCON_NOTE_IDENTIFIER.length);
  }
  if (type === RFC6962_NOTE_TYPE && !isP256Spki(publicKey)) {
    throw new StoqError(
      "BUNDLE_INVALID",
      "Cannot parse vkey: a 0x05 key must be an ECDSA P-256 SubjectPublicKeyInfo",
    );
  }
  return { name, hash, type, publicKey };
}

/**
 * Signs a note body with each signer, producing the full note text.
 *
 * @param body The note text; must end with a newline.
 * @param signers One or more signers.
 * @returns The signed note.
 *
 * @example Signing with no signers is refused
 * ```ts
 * import { signNote } from "./checkpoint.ts";
 * await signNote("x\n", []).catch((e) => console.log(e instanceof RangeError)); // true
 * ```
 */
export async function signNote(
  body: string,
  signers: readonly NoteSigner[],
): Promise<string> {
  if (!body.endsWith("\n")) {
    throw new TypeError("Cannot sign note as 'body' must end with a newline");
  }
  if (signers.length === 0) {
    throw new RangeError("Cannot sign note as 'signers' is empty");
  }
  const bytes = utf8ToBytes(body);
  let out = `${body}\n`;
  for (const s of signers) {
    const sig = await s.sign(bytes);
    out += `\u2014 ${s.name} ${toBase64(concatBytes(s.keyHash, sig))}\n`;
  }
  return out;
}

/** A verified note. */
export interface OpenedNote {
  /** The note body, ending in a newline. */
  body: string;
  /** Names of the keys whose signatures verified. */
  verifiedBy: string[];
}

/**
 * Verifies a note: every signature line that matches a known verifier (by name and key hash) must
 * verify, at least one must match, and unknown keys are skipped.
 *
 * @param text The full note text.
 * @param verifiers The trusted verifiers.
 * @returns The body and the names that verified.
 * @throws {StoqError} `PROOF_INVALID` when the note is malformed or no known signature verifies.
 *
 * @example Tampering is detected
 * ```ts
 * import { ed25519NoteSigner, noteVerifier, openNote, signNote } from "./checkpoint.ts";
 * const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]) as CryptoKeyPair;
 * const raw = new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey));
 * const note = await signNote("hi\n", [ed25519NoteSigner("k", keys.privateKey, raw)]);
 * await openNote(note.replace("hi", "ho"), [noteVerifier("k", 0x01, raw)])
 *   .catch((e) => console.log(e.code)); // "PROOF_INVALID"
 * ```
 */
export async function openNote(
  text: string,
  verifiers: readonly NoteVerifier[],
): Promise<OpenedNote> {
  const split = typeof text === "string" ? text.lastIndexOf("\n\n") : -1;
  if (split < 0 || !text.endsWith("\n")) {
    throw new StoqError(
      "PROOF_INVALID",
      "Cannot open note: missing the blank line before signatures",
    );
  }
  const body = text.slice(0, split + 1);
  const lines = text.slice(split + 2, -1).split("\n");
  const bytes = utf8ToBytes(body);
  const verifiedBy: string[] = [];
  for (const line of lines) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m) {
      throw new StoqError(
        "PROOF_INVALID",
        `Cannot open note: bad signature line ${JSON.stringify(line)}`,
      );
    }
    let raw: Uint8Array;
    try {
      raw = fromBase64(m[2]);
    } catch (cause) {
      throw new StoqError(
        "PROOF_INVALID",
        "Cannot open note: signature is not base64",
        { cause },
      );
    }
    if (raw.length < 5) {
      throw new StoqError(
        "PROOF_INVALID",
        "Cannot open note: signature too short",
      );
    }
    const hash = bytesToHex(raw.subarray(0, 4));
    const v = verifiers.find((v) =>
      v.name === m[1] && bytesToHex(v.keyHash) === hash
    );
    if (!v) continue;
    if (!(await v.verify(bytes, raw.subarray(4)))) {
      throw new StoqError(
        "PROOF_INVALID",
        `Note signature by ${v.name} does not verify`,
      );
    }
    verifiedBy.push(v.name);
  }
  if (verifiedBy.length === 0) {
    throw new StoqError(
      "PROOF_INVALID",
      "Note carries no signature from a trusted key",
    );
  }
  return { body, verifiedBy };
}

/** A parsed tlog checkpoint body. */
export interface Checkpoint {
  /** The log origin line. */
  origin: string;
  /** The tree size. */
  treeSize: number;
  /** The 32-byte root hash. */
  rootHash: Uint8Array;
}

/**
 * Formats a checkpoint body: `<origin>\n<tree size>\n<base64 root hash>\n`.
 *
 * @param checkpoint The checkpoint fields.
 * @returns The note body.
 *
 * @example Formatting
 * ```ts
 * import { formatCheckpoint } from "./checkpoint.ts";
 * console.log(formatCheckpoint({ origin: "o", treeSize: 2, rootHash: new Uint8Array(32) }).split("\n")[1]); // "2"
 * ```
 */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  _checkName(checkpoint.origin);
  if (!Number.isSafeInteger(checkpoint.treeSize) || checkpoint.treeSize < 0) {
    throw new RangeError(
      `Cannot format checkpoint as 'treeSize' is ${checkpoint.treeSize}`,
    );
  }
  if (checkpoint.rootHash.length !== 32) {
    throw new TypeError(
      "Cannot format checkpoint as 'rootHash' must be 32 bytes",
    );
  }
  return `${checkpoint.origin}\n${checkpoint.treeSize}\n${
    toBase64(checkpoint.rootHash)
  }\n`;
}

/**
 * Parses a checkpoint body (extension lines after the root hash are ignored).
 *
 * @param body The note body.
 * @returns The checkpoint fields.
 * @throws {StoqError} `PROOF_INVALID` when the body is not a checkpoint.
 *
 * @example Round trip
 * ```ts
 * import { formatCheckpoint, parseCheckpoint } from "./checkpoint.ts";
 * const body = formatCheckpoint({ origin: "o", treeSize: 2, rootHash: new Uint8Array(32) });
 * console.log(parseCheckpoint(body).treeSize); // 2
 * ```
 */
export function parseCheckpoint(body: string): Checkpoint {
  const lines = body.split("\n");
  const [origin, size, root] = lines;
  if (
    lines.length < 4 || !origin || !/^(0|[1-9][0-9]*)$/.test(size ?? "") ||
    !/^[A-Za-z0-9+/]{43}=$/.test(root ?? "")
  ) {
    throw new StoqError(
      "PROOF_INVALID",
      "Cannot parse checkpoint: expected origin, size and root lines",
    );
  }
  const treeSize = Number(size);
  if (!Number.isSafeInteger(treeSize)) {
    throw new StoqError(
      "PROOF_INVALID",
      "Cannot parse checkpoint: tree size too large",
    );
  }
  const rootHash = fromBase64(root);
  // Only the canonical encoding: the last character's two spare bits must be zero.
  if (toBase64(rootHash) !== root) {
    throw new StoqError(
      "PROOF_INVALID",
      "Cannot parse checkpoint: the root hash is not canonical base64",
    );
  }
  return { origin, treeSize, rootHash };
}
