// Private DER encoding for the issuance hot path: the few TLV shapes a leaf certificate and a CSR
// need, so issuing does not pay for a generic ASN.1 object model. Parsing stays with
// @peculiar/x509; tests check that what is built here parses back to the intended fields.

import { sha1 } from "npm:@noble/hashes@2.4.0/legacy.js";
import { concatBytes, hexToBytes, utf8ToBytes } from "./_bytes.ts";

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

/** The subjectAltName extension value for DNS names. */
export function sanValue(names: string[]): Uint8Array {
  return seq(...names.map((n) => tlv(0x82, utf8ToBytes(n))));
}

/** ecdsa-with-SHA256. */
export const ECDSA_SHA256: Uint8Array = seq(oid("1.2.840.10045.4.3.2"));

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

/** SubjectPublicKeyInfo of a raw uncompressed P-256 point. */
export function p256Spki(point: Uint8Array): Uint8Array {
  return concatBytes(P256_SPKI_PREFIX, point);
}

/**
 * A signed PKCS#10 request for one DNS name (CN and SAN), signed with ECDSA P-256/SHA-256.
 *
 * @param name The DNS name.
 * @param spki The subject's SubjectPublicKeyInfo DER.
 * @param privateKey The matching WebCrypto private key.
 * @returns The CSR DER.
 */
export async function buildCsr(
  name: string,
  spki: Uint8Array,
  privateKey: CryptoKey,
): Promise<Uint8Array> {
  const extensionRequest = seq(
    oid("1.2.840.113549.1.9.14"),
    set(seq(extension("2.5.29.17", false, sanValue([name])))),
  );
  const info = seq(
    uint(new Uint8Array([0])),
    cnName(name),
    spki,
    tlv(0xa0, extensionRequest),
  );
  const sig = new Uint8Array(
    await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      privateKey,
      info as Uint8Array<ArrayBuffer>,
    ),
  );
  return seq(info, ECDSA_SHA256, bits(ecdsaDer(sig)));
}
