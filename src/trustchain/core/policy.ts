/**
 * The issuance policy: which names a CA signs, which keys and CSRs it accepts, which lifetimes.
 * Pure functions of their inputs (CSR signature verification included); each refusal is a
 * {@linkcode StoqError} with a stable code.
 *
 * @module
 */

import { AsnConvert } from "npm:@peculiar/asn1-schema@2.11.1";
import { CertificationRequest } from "npm:@peculiar/asn1-csr@2.11.1";
import {
  Extensions,
  id_ce_subjectAltName,
  SubjectAlternativeName,
} from "npm:@peculiar/asn1-x509@2.11.1";
import { p256 } from "npm:@noble/curves@2.4.0/nist.js";
import { StoqError } from "../../errors.ts";
import { p256Point } from "./ecdsa.ts";
import * as der from "./_der.ts";
import { buf, equalBytes, fromBase64 } from "./_bytes.ts";

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The limits a CA applies to a CSR before it parses or verifies much of it. */
export interface CsrLimits {
  /** The largest CSR accepted, in DER bytes (a PEM may be 4/3 of it plus headers and line breaks). */
  maxCsrBytes: number;
  /** The most subjectAltName entries accepted. */
  maxSans: number;
}

/** The default {@linkcode CsrLimits}: 16 KiB and 100 names. */
export const DEFAULT_CSR_LIMITS: Readonly<CsrLimits> = {
  maxCsrBytes: 16 * 1024,
  maxSans: 100,
};

/**
 * Whether `text` is an IPv4 address: a dotted quad, or an IPv4-mapped IPv6 address
 * (`::ffff:a.b.c.d`, in any spelling).
 *
 * @param text An address or name.
 * @returns `true` for IPv4.
 */
export function isIpv4Address(text: string): boolean {
  if (IPV4.test(text)) return true;
  if (!text.includes(":")) return false;
  try {
    // The WHATWG parser compresses and rewrites ::ffff:a.b.c.d to ::ffff:xxxx:xxxx.
    const host = new URL(`http://[${text}]/`).hostname.slice(1, -1);
    return /^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(host);
  } catch {
    return false;
  }
}

/**
 * The canonical text of an IPv6 address (RFC 5952, as the WHATWG URL parser writes it), or
 * undefined when `text` is not one. IP subjectAltNames travel as this text, DNS names never
 * contain ':'.
 */
export function canonicalIpv6(text: string): string | undefined {
  if (!text.includes(":") || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  try {
    return new URL(`http://[${text}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

/** Whether `name` is a lowercase DNS name: labels of 1–63 characters, 253 in all. */
function _isDnsName(name: string): boolean {
  return name.length <= 253 && name.split(".").every((l) => DNS_LABEL.test(l));
}

/**
 * Whether a DNS name matches one of the allowed patterns (exact, or `*.suffix` for any name ending
 * in `.suffix`).
 *
 * @param name A lowercase DNS name.
 * @param allowed The allowed patterns.
 * @returns `true` when allowed.
 *
 * @example Suffix patterns
 * ```ts
 * import { nameAllowed } from "./policy.ts";
 * console.log(nameAllowed("a.b.stoq.local", ["*.stoq.local"])); // true
 * console.log(nameAllowed("stoq.local", ["*.stoq.local"])); // false
 * ```
 */
export function nameAllowed(name: string, allowed: readonly string[]): boolean {
  const n = name.toLowerCase();
  return allowed.some((p) => {
    const pattern = p.toLowerCase();
    return pattern.startsWith("*.")
      ? n.endsWith(pattern.slice(1))
      : n === pattern;
  });
}

/** Throws a `RangeError` unless `value` is a positive integer number of milliseconds. */
export function checkLifetime(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(
      `Cannot use '${name}' as it must be a positive integer of milliseconds: current value is ${value}`,
    );
  }
}

/**
 * Throws `NAME_NOT_ALLOWED` or `SAN_IPV4` unless every name is a DNS name the policy allows, or
 * an IPv6 address the policy lists exactly.
 */
export function checkNames(
  names: readonly string[],
  allowed: readonly string[],
): void {
  for (const name of names) {
    if (isIpv4Address(name)) {
      throw new StoqError(
        "SAN_IPV4",
        `The CSR names IPv4 address ${name}: STOQ is IPv6-only, use DNS names`,
      );
    }
    const ip = canonicalIpv6(name);
    if (ip !== undefined) {
      if (ip === name && allowed.some((a) => canonicalIpv6(a) === ip)) continue;
      throw new StoqError(
        "NAME_NOT_ALLOWED",
        `The address ${name} is not allowed by this CA: allowed are ${
          allowed.join(", ")
        }`,
      );
    }
    if (!_isDnsName(name) || !nameAllowed(name, allowed)) {
      throw new StoqError(
        "NAME_NOT_ALLOWED",
        `The name ${
          JSON.stringify(name)
        } is not allowed by this CA: allowed are ${allowed.join(", ")}`,
      );
    }
  }
}

/** A key and names that passed the policy. */
export interface CheckedRequest {
  /** SubjectPublicKeyInfo DER. */
  spki: Uint8Array;
  /** The DNS names, lowercase, without duplicates. */
  names: string[];
}

const OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const OID_P256 = "1.2.840.10045.3.1.7";
const OID_ED25519 = "1.3.101.112";
const OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2";
const OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14";
const OID_COMMON_NAME = "2.5.4.3";

function _malformed(message: string, cause?: unknown): StoqError {
  return new StoqError(
    "CSR_MALFORMED",
    message,
    cause === undefined ? {} : { cause },
  );
}

/** The DER of a CSR given as PEM or DER. */
function _csrDer(csr: string | Uint8Array): Uint8Array {
  if (typeof csr !== "string") return csr;
  const m =
    /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END (?:NEW )?CERTIFICATE REQUEST-----/
      .exec(csr);
  if (!m) {
    throw _malformed(
      "Cannot parse the CSR: expected a PEM CERTIFICATE REQUEST",
    );
  }
  try {
    return fromBase64(m[1].replace(/\s+/g, ""));
  } catch (cause) {
    throw _malformed("Cannot parse the CSR: its PEM body is not base64", cause);
  }
}

/** Verifies the request's signature with its own key; `false` for anything unverifiable. */
async function _selfSigned(
  info: Uint8Array,
  spki: Uint8Array,
  curve: "P-256" | "Ed25519",
  algorithm: string,
  signature: Uint8Array,
): Promise<boolean> {
  try {
    if (curve === "P-256") {
      if (algorithm !== OID_ECDSA_SHA256) return false;
      // A synchronous verify: no thread hop on the issuance path.
      return p256.verify(signature, info, p256Point(spki), {
        format: "der",
        lowS: false,
      });
    }
    if (algorithm !== OID_ED25519) return false;
    const key = await crypto.subtle.importKey(
      "spki",
      buf(spki),
      "Ed25519",
      false,
      ["verify"],
    );
    return await crypto.subtle.verify(
      "Ed25519",
      key,
      buf(signature),
      buf(info),
    );
  } catch {
    return false;
  }
}

/** Throws `CSR_TOO_LARGE` unless the CSR fits `limits`, before decoding anything. */
function _checkSize(csr: string | Uint8Array, limits: CsrLimits): void {
  const max = limits.maxCsrBytes;
  // Base64 is 4/3 of the DER; allow CRLF every 64 characters and the two armour lines.
  const maxPem = Math.ceil((Math.ceil(max / 3) * 4 * 66) / 64) + 128;
  const size = csr.length;
  if (size > (typeof csr === "string" ? maxPem : max)) {
    throw new StoqError(
      "CSR_TOO_LARGE",
      `The CSR has ${size} ${
        typeof csr === "string" ? "PEM characters" : "bytes"
      }; this CA accepts at most ${max} bytes of DER: request fewer names`,
    );
  }
}

/**
 * Applies the issuance policy to a CSR: at most `limits.maxCsrBytes` and `limits.maxSans` names,
 * a PKCS#10 request for an ECDSA P-256 or Ed25519 key, signed by that key, naming only allowed DNS
 * names. The request is decoded with `@peculiar/asn1-csr` (the schema `@peculiar/x509` uses,
 * without its object model).
 *
 * @param csr The request, PEM or DER.
 * @param allowed The allowed name patterns.
 * @param limits Size and name-count limits.
 * @returns The key and names.
 * @throws {StoqError} `CSR_TOO_LARGE`, `CSR_MALFORMED`, `TOO_MANY_SANS`, `KEY_UNSUPPORTED`,
 * `CSR_BAD_SIGNATURE`, `SAN_IPV4` or `NAME_NOT_ALLOWED`.
 */
export async function checkCsr(
  csr: string | Uint8Array,
  allowed: readonly string[],
  limits: CsrLimits = DEFAULT_CSR_LIMITS,
): Promise<CheckedRequest> {
  _checkSize(csr, limits);
  const bytes = _csrDer(csr);
  _checkSize(bytes, limits);
  // Counted on the raw DER first: the ASN.1 decoder gives up on very many nodes, and a request
  // with too many names should say so rather than look malformed.
  const count = _sanCount(bytes);
  if (count !== undefined && count > limits.maxSans) {
    throw _tooManySans(count, limits);
  }
  let req: CertificationRequest;
  let info: Uint8Array;
  let spki: Uint8Array;
  try {
    req = AsnConvert.parse(bytes, CertificationRequest);
    // The exact bytes signed and the key, as sent (re-encoding could differ from them).
    const outer = der.readTlv(bytes, 0);
    const infoTlv = der.children(bytes, outer)[0];
    info = der.raw(bytes, infoTlv);
    spki = der.raw(bytes, der.children(bytes, infoTlv)[2]);
  } catch (cause) {
    throw _malformed(
      "Cannot parse the CSR: send a PKCS#10 request as PEM or DER",
      cause,
    );
  }
  const san = _subjectAltName(req);
  if (san && san.length > limits.maxSans) {
    throw _tooManySans(san.length, limits);
  }
  const keyAlg = req.certificationRequestInfo.subjectPKInfo.algorithm;
  const p256Params = keyAlg.parameters !== null &&
    keyAlg.parameters !== undefined &&
    equalBytes(new Uint8Array(keyAlg.parameters), der.oid(OID_P256));
  const curve = keyAlg.algorithm === OID_EC_PUBLIC_KEY && p256Params
    ? "P-256"
    : keyAlg.algorithm === OID_ED25519
    ? "Ed25519"
    : undefined;
  if (!curve) {
    throw new StoqError(
      "KEY_UNSUPPORTED",
      `The CSR's key is of type ${keyAlg.algorithm}${
        keyAlg.algorithm === OID_EC_PUBLIC_KEY ? " on another curve" : ""
      }: use ECDSA P-256 or Ed25519`,
    );
  }
  let signature: Uint8Array;
  try {
    signature = new Uint8Array(req.signature);
  } catch (cause) {
    throw _malformed("The CSR's signature cannot be read", cause);
  }
  const signed = await _selfSigned(
    info,
    spki,
    curve,
    req.signatureAlgorithm.algorithm,
    signature,
  );
  if (!signed) {
    throw new StoqError(
      "CSR_BAD_SIGNATURE",
      "The CSR's signature does not verify: sign it with its own key",
    );
  }
  const names = _requestedNames(req, san);
  checkNames(names, allowed);
  return { spki: spki.slice(), names: [...new Set(names)] };
}

function _tooManySans(count: number, limits: CsrLimits): StoqError {
  return new StoqError(
    "TOO_MANY_SANS",
    `The CSR names ${count} subjectAltName entries; this CA accepts at most ${limits.maxSans}: split the request`,
  );
}

const SAN_OID = der.oid("2.5.29.17");
const EXTENSION_REQUEST_OID = der.oid(OID_EXTENSION_REQUEST);

/**
 * The number of subjectAltName entries a DER CSR asks for, walking its TLVs without decoding them;
 * `undefined` when it has none or its shape is not a CSR's (the decoder then says what is wrong).
 */
function _sanCount(bytes: Uint8Array): number | undefined {
  try {
    const [info] = der.children(bytes, der.readTlv(bytes, 0));
    const attributes = der.children(bytes, info).find((t) => t.tag === 0xa0);
    for (const attr of attributes ? der.children(bytes, attributes) : []) {
      const [type, values] = der.children(bytes, attr);
      if (!equalBytes(der.raw(bytes, type), EXTENSION_REQUEST_OID)) continue;
      const [extensions] = der.children(bytes, values);
      for (const ext of der.children(bytes, extensions)) {
        const fields = der.children(bytes, ext);
        if (!equalBytes(der.raw(bytes, fields[0]), SAN_OID)) continue;
        const value = fields[fields.length - 1];
        const names = der.readTlv(bytes, value.start + value.header);
        return der.children(bytes, names).length;
      }
    }
  } catch {
    // Not shaped like a CSR: the decoder reports it.
  }
  return undefined;
}

/** The request's subjectAltName entries, if it asks for the extension. */
function _subjectAltName(
  req: CertificationRequest,
): SubjectAlternativeName | undefined {
  try {
    const attr = req.certificationRequestInfo.attributes.find((a) =>
      a.type === OID_EXTENSION_REQUEST
    );
    const exts = attr?.values[0]
      ? AsnConvert.parse(attr.values[0], Extensions)
      : [];
    const ext = exts.find((e) => e.extnID === id_ce_subjectAltName);
    return ext
      ? AsnConvert.parse(ext.extnValue.buffer, SubjectAlternativeName)
      : undefined;
  } catch (cause) {
    throw _malformed("The CSR's subjectAltName cannot be parsed", cause);
  }
}

/** The DNS names a request asks for: its SAN, else its CN. */
function _requestedNames(
  req: CertificationRequest,
  san: SubjectAlternativeName | undefined,
): string[] {
  const names: string[] = [];
  for (const item of san ?? []) {
    if (item.iPAddress !== undefined) {
      if (isIpv4Address(item.iPAddress)) {
        throw new StoqError(
          "SAN_IPV4",
          `The CSR names IPv4 address ${item.iPAddress}: STOQ is IPv6-only, use DNS names`,
        );
      }
      const ip = canonicalIpv6(item.iPAddress);
      if (ip === undefined) {
        throw new StoqError(
          "NAME_NOT_ALLOWED",
          "The CSR names an IP address that is not IPv6: only DNS names and IPv6 addresses are issued",
        );
      }
      names.push(ip);
      continue;
    }
    if (typeof item.dNSName !== "string") {
      throw new StoqError(
        "NAME_NOT_ALLOWED",
        "The CSR names a non-DNS entry: only DNS names are issued",
      );
    }
    names.push(item.dNSName.toLowerCase());
  }
  if (names.length === 0) {
    for (const rdn of req.certificationRequestInfo.subject) {
      for (const atv of rdn) {
        if (atv.type === OID_COMMON_NAME) {
          let cn: string;
          try {
            cn = atv.value.toString();
          } catch (cause) {
            throw _malformed("The CSR's common name cannot be read", cause);
          }
          names.push(cn.toLowerCase());
        }
      }
    }
  }
  if (names.length === 0) {
    throw new StoqError(
      "NAME_NOT_ALLOWED",
      "The CSR names nothing: add a DNS subjectAltName",
    );
  }
  return names;
}
