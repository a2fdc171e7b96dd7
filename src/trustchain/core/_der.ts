// Private DER encoding for the issuance hot path: the few TLV shapes a leaf certificate and a CSR
// need, so issuing does not pay for a generic ASN.1 object model; and a minimal TLV reader for
// the one thing CT needs that @peculiar/x509 cannot do: take a TBSCertificate apart to remove an
// extension (RFC 6962 §3.2). Other parsing stays with @peculiar/x509; tests check that what is
// built here parses back to the intended fields and that independent tools accept it.

import { sha1 } from "npm:@noble/hashes@2.4.0/legacy.js";
import { AsnConvert } from "npm:@peculiar/asn1-schema@2.11.1";
import { GeneralName } from "npm:@peculiar/asn1-x509@2.11.1";
import { concatBytes, equalBytes, hexToBytes, utf8ToBytes } from "./_bytes.ts";

/** One TLV with a definite DER length. */
export function tlv(tag: number, ...content: Uint8Array[]): Uint8Array {
  const body = content.length === 1 ? content[0] : concatBytes(...content);
  const n = body.length;
  let head: Uint8Array;
  if (n < 0x80) head = new Uint8Array([tag, n]);
  else if (n < 0x100) head = new Uint8Array([tag, 0x81, n]);
  else if (n < 0x10000) head = new Uint8Array([tag, 0x82, n >> 8, n & 0xff]);
  else head = new Uint8Array([tag, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return concatBytes(head, body);
}

export const seq = (...c: Uint8Array[]): Uint8Array => tlv(0x30, ...c);
export const set = (...c: Uint8Array[]): Uint8Array => tlv(0x31, ...c);
export const octets = (b: Uint8Array): Uint8Array => tlv(0x04, b);
export const bits = (b: Uint8Array): Uint8Array =>
  tlv(0x03, new Uint8Array([0]), b);

/** A non-negative INTEGER from big-endian magnitude bytes. */
export function uint(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const v = bytes.subarray(i);
  return v[0] & 0x80
    ? tlv(0x02, new Uint8Array([0]), v)
    : tlv(0x02, v.length ? v : new Uint8Array([0]));
}

/** An OBJECT IDENTIFIER from dotted form. */
export function oid(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map(Number);
  const out = [arcs[0] * 40 + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const b: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) {
      b.unshift((v & 0x7f) | 0x80);
    }
    out.push(...b);
  }
  return tlv(0x06, new Uint8Array(out));
}

/** RFC 5280 Time: UTCTime through 2049, GeneralizedTime after. */
export function time(d: Date): Uint8Array {
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const y = d.getUTCFullYear();
  const rest = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${
    p(d.getUTCHours())
  }${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return y < 2050
    ? tlv(0x17, utf8ToBytes(`${p(y % 100)}${rest}`))
    : tlv(0x18, utf8ToBytes(`${p(y, 4)}${rest}`));
}

/** A Name with one CN (UTF8String). */
export function cnName(cn: string): Uint8Array {
  return seq(set(seq(oid("2.5.4.3"), tlv(0x0c, utf8ToBytes(cn)))));
}

/** An Extension. */
export function extension(
  id: string,
  critical: boolean,
  value: Uint8Array,
): Uint8Array {
  return critical
    ? seq(oid(id), tlv(0x01, new Uint8Array([0xff])), octets(value))
    : seq(oid(id), octets(value));
}

/**
 * The subjectAltName extension value: DNS names, and IPv6 addresses (canonical text, the only
 * names with ':') as iPAddress entries.
 */
export function sanValue(names: string[]): Uint8Array {
  return seq(
    ...names.map((n) =>
      n.includes(":")
        ? new Uint8Array(
          AsnConvert.serialize(new GeneralName({ iPAddress: n })),
        )
        : tlv(0x82, utf8ToBytes(n))
    ),
  );
}

/** ecdsa-with-SHA256. */
export const ECDSA_SHA256: Uint8Array = seq(oid("1.2.840.10045.4.3.2"));

/** The empty Name (RFC 5280 §4.1.2.6: a leaf whose identity is in a critical subjectAltName). */
export const EMPTY_NAME: Uint8Array = seq();

/** A WebCrypto (P1363 r||s) ECDSA signature as DER ECDSA-Sig-Value. */
export function ecdsaDer(p1363: Uint8Array): Uint8Array {
  const h = p1363.length / 2;
  return seq(uint(p1363.subarray(0, h)), uint(p1363.subarray(h)));
}

/**
 * RFC 5280 key identifier (SHA-1 of the subjectPublicKey bits) of a short SubjectPublicKeyInfo
 * (P-256 or Ed25519), or `undefined` for shapes this fast path does not handle.
 */
export function keyIdentifier(spki: Uint8Array): Uint8Array | undefined {
  if (spki[0] !== 0x30 || spki[1] >= 0x80 || spki[2] !== 0x30) return undefined;
  const at = 4 + spki[3];
  if (spki[at] !== 0x03 || spki[at + 1] >= 0x80 || spki[at + 2] !== 0) {
    return undefined;
  }
  return sha1(spki.subarray(at + 3, at + 2 + spki[at + 1]));
}

/** Serial hex (canonical, no leading zeros) as INTEGER content bytes. */
export function serialInteger(hex: string): Uint8Array {
  return uint(hexToBytes(hex.length % 2 ? `0${hex}` : hex));
}

/** The P-256 SubjectPublicKeyInfo prefix before the 65-byte uncompressed point. */
const P256_SPKI_PREFIX = hexToBytes(
  "3059301306072a8648ce3d020106082a8648ce3d030107034200",
);

/** Whether `spki` is an uncompressed ECDSA P-256 SubjectPublicKeyInfo. */
export function isP256Spki(spki: Uint8Array): boolean {
  return spki.length === P256_SPKI_PREFIX.length + 65 &&
    equalBytes(spki.subarray(0, P256_SPKI_PREFIX.length), P256_SPKI_PREFIX) &&
    spki[P256_SPKI_PREFIX.length] === 4;
}

/** SubjectPublicKeyInfo of a raw uncompressed P-256 point. */
export function p256Spki(point: Uint8Array): Uint8Array {
  return concatBytes(P256_SPKI_PREFIX, point);
}

/**
 * A signed PKCS#10 request for one DNS name (SAN, and CN when it has at most 64 characters),
 * signed with ECDSA P-256/SHA-256.
 *
 * @param name The DNS name.
 * @param spki The subject's SubjectPublicKeyInfo DER.
 * @param sign Signs with the matching private key (`r || s`).
 * @returns The CSR DER.
 */
export function buildCsr(
  name: string,
  spki: Uint8Array,
  sign: (data: Uint8Array) => Uint8Array,
): Uint8Array {
  const extensionRequest = seq(
    oid("1.2.840.113549.1.9.14"),
    set(seq(extension("2.5.29.17", false, sanValue([name])))),
  );
  const info = seq(
    uint(new Uint8Array([0])),
    name.length <= 64 ? cnName(name) : EMPTY_NAME, // RFC 5280 ub-common-name
    spki,
    tlv(0xa0, extensionRequest),
  );
  return seq(info, ECDSA_SHA256, bits(ecdsaDer(sign(info))));
}

/** A DER ECDSA-Sig-Value as the P1363 `r || s` WebCrypto verifies (`size` bytes each). */
export function ecdsaP1363(der: Uint8Array, size = 32): Uint8Array {
  const sig = readTlv(der, 0);
  if (sig.tag !== 0x30 || sig.end !== der.length) {
    throw new RangeError("ECDSA signature is not a DER SEQUENCE");
  }
  const [r, s] = children(der, sig);
  const out = new Uint8Array(2 * size);
  for (const [i, part] of [r, s].entries()) {
    if (part?.tag !== 0x02) {
      throw new RangeError("ECDSA signature lacks r or s");
    }
    let v = der.subarray(part.start + part.header, part.end);
    while (v.length > 1 && v[0] === 0) v = v.subarray(1);
    if (v.length > size) throw new RangeError("ECDSA integer too large");
    out.set(v, (i + 1) * size - v.length);
  }
  return out;
}

/** One DER element: tag, where its content starts (`start + header`) and where it ends. */
export interface Tlv {
  /** The (single-byte) tag. */
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Bytes of tag and length. */
  header: number;
  /** Offset just past the content. */
  end: number;
}

/** Reads the element at `at`; throws `RangeError` when it does not fit in `bytes`. */
export function readTlv(bytes: Uint8Array, at: number): Tlv {
  if (at + 2 > bytes.length) throw new RangeError("Truncated DER");
  const tag = bytes[at];
  if ((tag & 0x1f) === 0x1f) {
    throw new RangeError("Multi-byte DER tags are not used here");
  }
  let length = bytes[at + 1];
  let header = 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || at + 2 + n > bytes.length) {
      throw new RangeError("Bad DER length");
    }
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + bytes[at + 2 + i];
    header += n;
  }
  const end = at + header + length;
  if (end > bytes.length) throw new RangeError("Truncated DER");
  return { tag, start: at, header, end };
}

/** The elements inside a constructed element. */
export function children(bytes: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start + parent.header; at < parent.end;) {
    const t = readTlv(bytes, at);
    if (t.end > parent.end) {
      throw new RangeError("DER element overruns its parent");
    }
    out.push(t);
    at = t.end;
  }
  return out;
}

/** The bytes of an element, tag and length included. */
export function raw(bytes: Uint8Array, t: Tlv): Uint8Array {
  return bytes.subarray(t.start, t.end);
}

/** The parts of a Certificate: its TBSCertificate and the TBS fields CT and Falcon need. */
export interface CertificateParts {
  /** The TBSCertificate, DER. */
  tbs: Uint8Array;
  /** The subject's SubjectPublicKeyInfo, DER. */
  spki: Uint8Array;
  /** The extensions, in order: OID (DER, tag included), criticality and extnValue content. */
  extensions: { oid: Uint8Array; critical: boolean; value: Uint8Array }[];
}

/** Takes a certificate apart (throws `RangeError` when it is not shaped like one). */
export function certificateParts(cert: Uint8Array): CertificateParts {
  const outer = readTlv(cert, 0);
  if (outer.tag !== 0x30 || outer.end !== cert.length) {
    throw new RangeError("Not a DER certificate");
  }
  const tbsTlv = children(cert, outer)[0];
  if (tbsTlv?.tag !== 0x30) {
    throw new RangeError("Certificate has no TBSCertificate");
  }
  const fields = children(cert, tbsTlv);
  // version [0], serial, signature, issuer, validity, subject, spki, then optional [1] [2] [3].
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0;
  const spki = fields[offset + 5];
  if (spki?.tag !== 0x30) {
    throw new RangeError("Certificate has no SubjectPublicKeyInfo");
  }
  const extensions: CertificateParts["extensions"] = [];
  const exts = fields.find((f) => f.tag === 0xa3);
  if (exts) {
    const list = children(cert, exts)[0];
    for (const ext of list ? children(cert, list) : []) {
      const parts = children(cert, ext);
      const critical = parts.length === 3 && parts[1].tag === 0x01 &&
        cert[parts[1].end - 1] !== 0;
      const value = parts.at(-1)!;
      if (parts[0]?.tag !== 0x06 || value.tag !== 0x04) {
        throw new RangeError("Malformed certificate extension");
      }
      extensions.push({
        oid: raw(cert, parts[0]),
        critical,
        value: cert.subarray(value.start + value.header, value.end),
      });
    }
  }
  return { tbs: raw(cert, tbsTlv), spki: raw(cert, spki), extensions };
}

/**
 * The TBSCertificate without the extension `id` (dotted OID), re-encoded; as RFC 6962 §3.2 builds
 * a precertificate's log entry from it (removing the poison, or the SCT list of a final
 * certificate). Throws `RangeError` when the extension is absent.
 */
export function removeExtension(tbs: Uint8Array, id: string): Uint8Array {
  const target = oid(id);
  const top = readTlv(tbs, 0);
  if (top.tag !== 0x30 || top.end !== tbs.length) {
    throw new RangeError("Not a DER TBSCertificate");
  }
  const fields = children(tbs, top);
  const exts = fields.find((f) => f.tag === 0xa3);
  const list = exts ? children(tbs, exts)[0] : undefined;
  if (!exts || !list) throw new RangeError(`No extension ${id}`);
  const kept = children(tbs, list).filter((e) =>
    !equalBytes(raw(tbs, children(tbs, e)[0]), target)
  );
  if (kept.length === children(tbs, list).length) {
    throw new RangeError(`No extension ${id}`);
  }
  return seq(
    ...fields.map((f) =>
      f === exts ? tlv(0xa3, seq(...kept.map((e) => raw(tbs, e)))) : raw(tbs, f)
    ),
  );
}

/** The serial number of a TBSCertificate as hex of its INTEGER content. */
export function tbsSerialHex(tbs: Uint8Array): string {
  const fields = children(tbs, readTlv(tbs, 0));
  const serial = fields[fields[0]?.tag === 0xa0 ? 1 : 0];
  if (serial?.tag !== 0x02) {
    throw new RangeError("TBSCertificate has no serial");
  }
  let hex = "";
  for (const b of tbs.subarray(serial.start + serial.header, serial.end)) {
    hex += b.toString(16).padStart(2, "0");
  }
  return hex;
}
