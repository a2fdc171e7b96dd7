/**
 * RFC 6962 Certificate Transparency structures, as TrustChain's log writes them and standard CT
 * tooling reads them: the `TimestampedEntry` of a precertificate, the `MerkleTreeLeaf` whose hash
 * goes into the tree, the Signed Certificate Timestamp (SCT) and its list extension, the
 * `TreeHeadSignature` of a signed tree head, and the C2SP static-ct-api `TileLeaf` a data tile
 * holds. Signatures are ECDSA P-256 with SHA-256 (RFC 6962 §2.1.4), the log ID is the SHA-256 of
 * the log key's DER SubjectPublicKeyInfo, and every SCT carries the static-ct-api `leaf_index`
 * extension.
 *
 * All functions here are pure encodings, except the ones that sign or verify with a WebCrypto key.
 *
 * @module
 */

import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { StoqError } from "../../errors.ts";
import type { EcdsaSigner } from "./ecdsa.ts";
import * as der from "./_der.ts";
import {
  buf,
  concatBytes,
  equalBytes,
  fromBase64,
  Reader,
  toBase64,
  u64,
  uint,
  vector,
} from "./_bytes.ts";

/** OID of the embedded SCT list extension (RFC 6962 §3.3). */
export const SCT_LIST_OID = "1.3.6.1.4.1.11129.2.4.2";
/** OID of the precertificate poison extension (RFC 6962 §3.1). */
export const PRECERT_POISON_OID = "1.3.6.1.4.1.11129.2.4.3";

const ENTRY_X509 = 0;
const ENTRY_PRECERT = 1;
const SIG_CERTIFICATE_TIMESTAMP = 0;
const SIG_TREE_HASH = 1;
const HASH_SHA256 = 4;
const SIGN_ECDSA = 3;
const EXT_LEAF_INDEX = 0;
const ECDSA = { name: "ECDSA", hash: "SHA-256" } as const;

/**
 * A Signed Certificate Timestamp (RFC 6962 §3.2, version 1), in a JSON-safe form: the log's promise
 * that the entry at `leafIndex` is in its log.
 */
export interface Sct {
  /** Base64 log ID: SHA-256 of the log key's DER SubjectPublicKeyInfo. */
  logId: string;
  /** Milliseconds since the Unix epoch. */
  timestamp: number;
  /** The entry's index in the log (the static-ct-api `leaf_index` SCT extension). */
  leafIndex: number;
  /** Base64 TLS `DigitallySigned` (SHA-256, ECDSA, DER signature) over the SCT's signed data. */
  signature: string;
}

/** The fields of a precertificate log entry (RFC 6962 §3.4 `TimestampedEntry`). */
export interface PrecertEntry {
  /** Milliseconds since the epoch (the SCT's timestamp). */
  timestamp: number;
  /** SHA-256 of the issuer's DER SubjectPublicKeyInfo. */
  issuerKeyHash: Uint8Array;
  /** The precertificate's TBSCertificate without the poison extension. */
  tbs: Uint8Array;
  /** The entry's index in the log. */
  leafIndex: number;
}

/**
 * The log ID of an RFC 6962 log: SHA-256 of its key's DER SubjectPublicKeyInfo.
 *
 * @param spki The log key's SubjectPublicKeyInfo, DER.
 * @returns The 32-byte log ID.
 *
 * @example Length
 * ```ts
 * import { logIdOf } from "./rfc6962.ts";
 * console.log(logIdOf(new Uint8Array(91)).length); // 32
 * ```
 */
export function logIdOf(spki: Uint8Array): Uint8Array {
  return sha256(spki);
}

/** The static-ct-api `CtExtensions` holding one `leaf_index` extension (8 bytes, unprefixed). */
function _leafIndexExtensions(leafIndex: number): Uint8Array {
  return concatBytes(
    new Uint8Array([EXT_LEAF_INDEX]),
    vector(2, uint(leafIndex, 5)),
  );
}

/** The leaf index in a `CtExtensions` value; throws `RangeError` when there is none. */
function _parseLeafIndex(extensions: Uint8Array): number {
  const r = new Reader(extensions);
  let index: number | undefined;
  while (r.remaining > 0) {
    const type = r.uint(1);
    const data = r.vector(2);
    if (type === EXT_LEAF_INDEX) {
      if (index !== undefined || data.length !== 5) {
        throw new RangeError("Bad or repeated leaf_index extension");
      }
      index = new Reader(data).uint(5);
    }
  }
  if (index === undefined) throw new RangeError("No leaf_index extension");
  return index;
}

/** `PreCert` + extensions as both `TimestampedEntry` and the SCT's signed data carry them. */
function _precertBody(e: PrecertEntry): Uint8Array {
  return concatBytes(
    uint(ENTRY_PRECERT, 2),
    e.issuerKeyHash,
    vector(3, e.tbs),
    vector(2, _leafIndexExtensions(e.leafIndex)),
  );
}

/**
 * The RFC 6962 §3.4 `TimestampedEntry` of a precertificate entry.
 *
 * @param entry The entry fields.
 * @returns The TLS encoding.
 *
 * @example Starts with the timestamp
 * ```ts
 * import { timestampedEntry } from "./rfc6962.ts";
 * const te = timestampedEntry({ timestamp: 1, issuerKeyHash: new Uint8Array(32), tbs: new Uint8Array([0x30, 0]), leafIndex: 0 });
 * console.log(te[7], te[9]); // 1 1
 * ```
 */
export function timestampedEntry(entry: PrecertEntry): Uint8Array {
  if (entry.issuerKeyHash.length !== 32) {
    throw new TypeError(
      "Cannot encode entry as 'issuerKeyHash' must be 32 bytes",
    );
  }
  return concatBytes(u64(entry.timestamp), _precertBody(entry));
}

/**
 * The RFC 6962 §3.4 `MerkleTreeLeaf` (version 1, `timestamped_entry`) whose leaf hash is in the
 * tree.
 *
 * @param entry The `TimestampedEntry` bytes.
 * @returns The leaf bytes.
 *
 * @example Two header bytes
 * ```ts
 * import { merkleTreeLeaf } from "./rfc6962.ts";
 * console.log(merkleTreeLeaf(new Uint8Array([7])).length); // 3
 * ```
 */
export function merkleTreeLeaf(entry: Uint8Array): Uint8Array {
  return concatBytes(new Uint8Array([0, 0]), entry);
}

/** A parsed static-ct-api `TileLeaf`. */
export interface TileLeaf {
  /** The `TimestampedEntry` bytes. */
  timestampedEntry: Uint8Array;
  /** Its timestamp, ms since the epoch. */
  timestamp: number;
  /** `x509_entry` or `precert_entry`. */
  entryType: "x509" | "precert";
  /** For precertificate entries: the issuer key hash. */
  issuerKeyHash?: Uint8Array;
  /** The signed certificate: the leaf DER (x509) or the TBSCertificate (precert). */
  signed: Uint8Array;
  /** The entry's leaf index, from its `leaf_index` extension. */
  leafIndex: number;
  /** For precertificate entries: the submitted precertificate DER. */
  preCertificate?: Uint8Array;
  /** SHA-256 fingerprints of the issuers in the submitted chain. */
  chain: Uint8Array[];
}

/**
 * The C2SP static-ct-api `TileLeaf` of a precertificate entry: what a data tile holds, and what
 * TrustChain stores as the log entry.
 *
 * @param entry The `TimestampedEntry` bytes (a precertificate entry).
 * @param preCertificate The signed precertificate, DER.
 * @param chain SHA-256 fingerprints of the issuer certificates.
 * @returns The encoding.
 *
 * @example Round trip
 * ```ts
 * import { parseTileLeaf, tileLeaf, timestampedEntry } from "./rfc6962.ts";
 * const te = timestampedEntry({ timestamp: 5, issuerKeyHash: new Uint8Array(32), tbs: new Uint8Array([0x30, 0]), leafIndex: 3 });
 * const leaf = parseTileLeaf(tileLeaf(te, new Uint8Array([0x30, 0]), [new Uint8Array(32)]));
 * console.log(leaf.leafIndex, leaf.timestamp, leaf.chain.length); // 3 5 1
 * ```
 */
export function tileLeaf(
  entry: Uint8Array,
  preCertificate: Uint8Array,
  chain: readonly Uint8Array[],
): Uint8Array {
  return concatBytes(
    entry,
    vector(3, preCertificate),
    vector(2, ...chain),
  );
}

/** A `MALFORMED` error for bytes that do not decode as `what`. */
function _malformed(what: string, cause: unknown): StoqError {
  return new StoqError(
    "MALFORMED",
    `Cannot decode ${what}: ${
      cause instanceof Error ? cause.message : String(cause)
    }`,
    { cause },
  );
}

/**
 * Parses one `TileLeaf` from the start of `bytes`.
 *
 * @param bytes A data tile or a single entry.
 * @returns The leaf and how many bytes it took.
 * @throws {StoqError} `MALFORMED` when the bytes are not a `TileLeaf`.
 */
export function readTileLeaf(
  bytes: Uint8Array,
): { leaf: TileLeaf; length: number } {
  try {
    return _readTileLeaf(bytes);
  } catch (cause) {
    throw _malformed("a TileLeaf", cause);
  }
}

function _readTileLeaf(
  bytes: Uint8Array,
): { leaf: TileLeaf; length: number } {
  if (!(bytes instanceof Uint8Array)) throw new TypeError("not bytes");
  const r = new Reader(bytes);
  const timestamp = r.uint(8);
  const type = r.uint(2);
  let issuerKeyHash: Uint8Array | undefined;
  if (type === ENTRY_PRECERT) issuerKeyHash = r.bytes(32);
  else if (type !== ENTRY_X509) {
    throw new RangeError(`Unknown entry type ${type}`);
  }
  const signed = r.vector(3);
  const extensions = r.vector(2);
  const teLength = bytes.length - r.remaining;
  const preCertificate = type === ENTRY_PRECERT ? r.vector(3) : undefined;
  const fingerprints = r.vector(2);
  if (fingerprints.length % 32 !== 0) {
    throw new RangeError("Chain fingerprints are not 32-byte hashes");
  }
  const chain: Uint8Array[] = [];
  for (let i = 0; i < fingerprints.length; i += 32) {
    chain.push(fingerprints.subarray(i, i + 32));
  }
  return {
    leaf: {
      timestampedEntry: bytes.subarray(0, teLength),
      timestamp,
      entryType: type === ENTRY_PRECERT ? "precert" : "x509",
      issuerKeyHash,
      signed,
      leafIndex: _parseLeafIndex(extensions),
      preCertificate,
      chain,
    },
    length: bytes.length - r.remaining,
  };
}

/**
 * Parses a `TileLeaf` that fills `bytes` exactly.
 *
 * @param bytes One entry.
 * @returns The leaf.
 * @throws {StoqError} `MALFORMED` when the bytes are not exactly one `TileLeaf`.
 *
 * @example See {@linkcode tileLeaf}
 * ```ts
 * import { parseTileLeaf } from "./rfc6962.ts";
 * try { parseTileLeaf(new Uint8Array(3)); } catch (e) { console.log((e as { code: string }).code); } // "MALFORMED"
 * ```
 */
export function parseTileLeaf(bytes: Uint8Array): TileLeaf {
  const { leaf, length } = readTileLeaf(bytes);
  if (length !== bytes.length) {
    throw _malformed(
      "a TileLeaf",
      `${bytes.length - length} bytes after the TileLeaf`,
    );
  }
  return leaf;
}

/** The data an SCT signs (RFC 6962 §3.2 `digitally-signed struct`). */
function _sctSignedData(entry: PrecertEntry): Uint8Array {
  return concatBytes(
    new Uint8Array([0, SIG_CERTIFICATE_TIMESTAMP]),
    u64(entry.timestamp),
    _precertBody(entry),
  );
}

/** A TLS `DigitallySigned` of SHA-256/ECDSA with a DER signature. */
function _digitallySigned(derSignature: Uint8Array): Uint8Array {
  return concatBytes(
    new Uint8Array([HASH_SHA256, SIGN_ECDSA]),
    vector(2, derSignature),
  );
}

/** The DER signature inside a SHA-256/ECDSA `DigitallySigned`; throws `RangeError` otherwise. */
function _parseDigitallySigned(ds: Uint8Array): Uint8Array {
  const r = new Reader(ds);
  if (r.uint(1) !== HASH_SHA256 || r.uint(1) !== SIGN_ECDSA) {
    throw new RangeError("Signature is not SHA-256/ECDSA");
  }
  const sig = r.vector(2);
  r.end();
  return sig;
}

/** ECDSA P-256/SHA-256 over `data`, DER-encoded as TLS carries it. */
function _signEcdsa(signer: EcdsaSigner, data: Uint8Array): Uint8Array {
  return der.ecdsaDer(signer.sign(data));
}

async function _verifyEcdsa(
  key: CryptoKey,
  derSignature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  try {
    return await crypto.subtle.verify(
      ECDSA,
      key,
      buf(der.ecdsaP1363(derSignature)),
      buf(data),
    );
  } catch {
    return false;
  }
}

/**
 * Imports an ECDSA P-256 SubjectPublicKeyInfo for verifying SCTs and tree heads.
 *
 * @param spki The DER SubjectPublicKeyInfo.
 * @returns The WebCrypto key.
 */
export function importLogKey(spki: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "spki",
    buf(spki),
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["verify"],
  );
}

/**
 * Signs an SCT for a precertificate entry.
 *
 * @param signer The log's ECDSA P-256 key.
 * @param logId The log ID (see {@linkcode logIdOf}).
 * @param entry The entry the SCT promises.
 * @returns The SCT.
 */
export function signSct(
  signer: EcdsaSigner,
  logId: Uint8Array,
  entry: PrecertEntry,
): Sct {
  const sig = _signEcdsa(signer, _sctSignedData(entry));
  return {
    logId: toBase64(logId),
    timestamp: entry.timestamp,
    leafIndex: entry.leafIndex,
    signature: toBase64(_digitallySigned(sig)),
  };
}

/**
 * Verifies an SCT's signature over a precertificate entry with the log's key.
 *
 * @param sct The SCT.
 * @param entry The entry (its timestamp and leaf index must be the SCT's).
 * @param logKey The log's public key (see {@linkcode importLogKey}).
 * @returns `true` when valid.
 */
export async function verifySctSignature(
  sct: Sct,
  entry: Omit<PrecertEntry, "timestamp" | "leafIndex">,
  logKey: CryptoKey,
): Promise<boolean> {
  try {
    const sig = _parseDigitallySigned(fromBase64(sct.signature));
    return await _verifyEcdsa(
      logKey,
      sig,
      _sctSignedData({
        ...entry,
        timestamp: sct.timestamp,
        leafIndex: sct.leafIndex,
      }),
    );
  } catch {
    return false;
  }
}

/**
 * Verifies an SCT embedded in a final certificate, offline: the log ID is the log key's, and
 * the log's signature covers the precertificate entry rebuilt from the certificate (its
 * TBSCertificate without the SCT list) and the issuer's key.
 *
 * @param sct The SCT (e.g. from {@linkcode embeddedScts}).
 * @param cert The final certificate DER.
 * @param issuer The issuer's certificate DER.
 * @param logKey The log key's DER SubjectPublicKeyInfo.
 * @returns `true` when valid.
 *
 * @example Checking a provisioned certificate's SCT
 * ```ts
 * import { CertificateAuthority, MemoryCaStore } from "../mod.ts";
 * import { embeddedScts, verifySct } from "./rfc6962.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * const id = await ca.provision("app");
 * console.log(await verifySct(embeddedScts(id.der)[0], id.der, ca.rootDer, ca.log.publicKey)); // true
 * ```
 */
export async function verifySct(
  sct: Sct,
  cert: Uint8Array,
  issuer: Uint8Array,
  logKey: Uint8Array,
): Promise<boolean> {
  try {
    if (!equalBytes(fromBase64(sct.logId), logIdOf(logKey))) return false;
    const entry = precertEntryOf(cert, der.certificateParts(issuer).spki, sct);
    return await verifySctSignature(sct, entry, await importLogKey(logKey));
  } catch {
    return false;
  }
}

/**
 * The RFC 6962 §3.2 `SignedCertificateTimestamp` encoding of an SCT.
 *
 * @param sct The SCT.
 * @returns The TLS encoding.
 *
 * @example Round trip
 * ```ts
 * import { decodeSct, encodeSct } from "./rfc6962.ts";
 * const sct = { logId: btoa("x".repeat(32)), timestamp: 9, leafIndex: 4, signature: btoa("\x04\x03\x00\x01\x00") };
 * console.log(decodeSct(encodeSct(sct)).leafIndex); // 4
 * ```
 */
export function encodeSct(sct: Sct): Uint8Array {
  const logId = fromBase64(sct.logId);
  if (logId.length !== 32) {
    throw new TypeError("Cannot encode SCT as 'logId' must be 32 bytes");
  }
  return concatBytes(
    new Uint8Array([0]),
    logId,
    u64(sct.timestamp),
    vector(2, _leafIndexExtensions(sct.leafIndex)),
    fromBase64(sct.signature),
  );
}

/**
 * Decodes a `SignedCertificateTimestamp`.
 *
 * @param bytes The TLS encoding.
 * @returns The SCT.
 * @throws {StoqError} `MALFORMED` when the bytes are not a version 1 SCT with a `leaf_index`
 * extension.
 *
 * @example Refusing bytes that are not an SCT
 * ```ts
 * import { decodeSct } from "./rfc6962.ts";
 * try { decodeSct(new Uint8Array([1, 2, 3])); } catch (e) { console.log((e as { code: string }).code); } // "MALFORMED"
 * ```
 */
export function decodeSct(bytes: Uint8Array): Sct {
  try {
    return _decodeSct(bytes);
  } catch (cause) {
    throw _malformed("an SCT", cause);
  }
}

function _decodeSct(bytes: Uint8Array): Sct {
  if (!(bytes instanceof Uint8Array)) throw new TypeError("not bytes");
  const r = new Reader(bytes);
  if (r.uint(1) !== 0) throw new RangeError("Not a version 1 SCT");
  const logId = r.bytes(32);
  const timestamp = r.uint(8);
  const leafIndex = _parseLeafIndex(r.vector(2));
  const signature = r.bytes(r.remaining);
  _parseDigitallySigned(signature);
  return {
    logId: toBase64(logId),
    timestamp,
    leafIndex,
    signature: toBase64(signature),
  };
}

/**
 * The SCT list extension of a final certificate (RFC 6962 §3.3): non-critical, its value an OCTET
 * STRING holding the TLS `SignedCertificateTimestampList`.
 *
 * @param scts The SCTs.
 * @returns The DER Extension.
 */
export function sctListExtension(scts: readonly Sct[]): Uint8Array {
  const list = vector(2, ...scts.map((s) => vector(2, encodeSct(s))));
  return der.extension(SCT_LIST_OID, false, der.octets(list));
}

/** The precertificate poison extension: critical, value ASN.1 NULL (RFC 6962 §3.1). */
export const POISON_EXTENSION: Uint8Array = der.extension(
  PRECERT_POISON_OID,
  true,
  new Uint8Array([0x05, 0x00]),
);

/**
 * The SCTs embedded in a certificate.
 *
 * @param cert The certificate DER.
 * @returns The SCTs, in list order (empty when the certificate has no SCT list extension).
 * @throws {StoqError} `MALFORMED` when the certificate or its SCT list is malformed.
 *
 * @example A provisioned certificate carries one SCT
 * ```ts
 * import { CertificateAuthority, MemoryCaStore } from "../mod.ts";
 * import { embeddedScts } from "./rfc6962.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * const id = await ca.provision("app");
 * console.log(embeddedScts(id.der)[0].leafIndex); // 0
 * ```
 */
export function embeddedScts(cert: Uint8Array): Sct[] {
  try {
    return _embeddedScts(cert);
  } catch (cause) {
    if (cause instanceof StoqError) throw cause;
    throw _malformed("the certificate's SCT list", cause);
  }
}

function _embeddedScts(cert: Uint8Array): Sct[] {
  const oid = der.oid(SCT_LIST_OID);
  const ext = der.certificateParts(cert).extensions.find((e) =>
    equalBytes(e.oid, oid)
  );
  if (!ext) return [];
  const octets = der.readTlv(ext.value, 0);
  if (octets.tag !== 0x04 || octets.end !== ext.value.length) {
    throw new RangeError("SCT list extension is not an OCTET STRING");
  }
  const outer = new Reader(ext.value.subarray(octets.header));
  const list = new Reader(outer.vector(2));
  outer.end();
  const out: Sct[] = [];
  while (list.remaining > 0) out.push(decodeSct(list.vector(2)));
  return out;
}

/**
 * The precertificate entry a final certificate's embedded SCT stands for: the TBSCertificate
 * without its SCT list extension, and the issuer's key hash (RFC 6962 §3.2).
 *
 * @param cert The final certificate DER.
 * @param issuerSpki The issuer's DER SubjectPublicKeyInfo.
 * @param sct One of the certificate's embedded SCTs.
 * @returns The entry.
 * @throws {RangeError} When the certificate has no SCT list.
 */
export function precertEntryOf(
  cert: Uint8Array,
  issuerSpki: Uint8Array,
  sct: Pick<Sct, "timestamp" | "leafIndex">,
): PrecertEntry {
  return {
    timestamp: sct.timestamp,
    leafIndex: sct.leafIndex,
    issuerKeyHash: sha256(issuerSpki),
    tbs: der.removeExtension(der.certificateParts(cert).tbs, SCT_LIST_OID),
  };
}

/**
 * The `MerkleTreeLeaf` a final certificate with an embedded SCT was logged as: what an inclusion
 * proof for the certificate proves.
 *
 * @param cert The final certificate DER.
 * @param issuer The issuer's certificate DER.
 * @param sct Which embedded SCT (default: the first).
 * @returns The leaf bytes (hash them with `leafHash`).
 * @throws {RangeError} When the certificate has no embedded SCT.
 *
 * @example Proving a provisioned certificate is in the log
 * ```ts
 * import { CertificateAuthority, MemoryCaStore, verifyTransparencyProof } from "../mod.ts";
 * import { certificateLogLeaf } from "./rfc6962.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * const id = await ca.provision("app");
 * const head = await verifyTransparencyProof(certificateLogLeaf(id.der, ca.rootDer), id.proof, ca.log.verifiers);
 * console.log(head.treeSize); // 1
 * ```
 */
export function certificateLogLeaf(
  cert: Uint8Array,
  issuer: Uint8Array,
  sct: Sct | undefined = embeddedScts(cert)[0],
): Uint8Array {
  if (!sct) throw new RangeError("The certificate carries no SCT");
  const entry = precertEntryOf(
    cert,
    der.certificateParts(issuer).spki,
    sct,
  );
  return merkleTreeLeaf(timestampedEntry(entry));
}

/** The RFC 6962 §3.5 `TreeHeadSignature` signed data. */
function _treeHeadData(
  timestamp: number,
  treeSize: number,
  rootHash: Uint8Array,
): Uint8Array {
  return concatBytes(
    new Uint8Array([0, SIG_TREE_HASH]),
    u64(timestamp),
    u64(treeSize),
    rootHash,
  );
}

/**
 * Signs a tree head as the C2SP static-ct-api note signature body:
 * `uint64 timestamp || TreeHeadSignature` (a `DigitallySigned`).
 *
 * @param sign ECDSA P-256/SHA-256 with the log's key, returning `r || s`.
 * @param timestamp Milliseconds since the epoch.
 * @param treeSize The tree size.
 * @param rootHash The 32-byte root hash.
 * @returns The `RFC6962NoteSignature` bytes.
 */
export async function signTreeHead(
  sign: (data: Uint8Array) => Uint8Array | Promise<Uint8Array>,
  timestamp: number,
  treeSize: number,
  rootHash: Uint8Array,
): Promise<Uint8Array> {
  const sig = der.ecdsaDer(
    await sign(_treeHeadData(timestamp, treeSize, rootHash)),
  );
  return concatBytes(u64(timestamp), _digitallySigned(sig));
}

/**
 * Verifies an `RFC6962NoteSignature` over a tree head.
 *
 * @param key The log's public key.
 * @param signature The note signature body (timestamp, then `DigitallySigned`).
 * @param treeSize The tree size the note states.
 * @param rootHash The root hash the note states.
 * @returns The signed timestamp, or `undefined` when the signature is invalid.
 */
export async function verifyTreeHead(
  key: CryptoKey,
  signature: Uint8Array,
  treeSize: number,
  rootHash: Uint8Array,
): Promise<number | undefined> {
  try {
    const r = new Reader(signature);
    const timestamp = r.uint(8);
    const sig = _parseDigitallySigned(r.bytes(r.remaining));
    const ok = await _verifyEcdsa(
      key,
      sig,
      _treeHeadData(timestamp, treeSize, rootHash),
    );
    return ok ? timestamp : undefined;
  } catch {
    return undefined;
  }
}
