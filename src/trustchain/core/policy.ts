/**
 * The issuance policy: which names a CA signs, which keys and CSRs it accepts, which lifetimes.
 * Pure functions of their inputs (CSR signature verification included); each refusal is a
 * {@linkcode StoqError} with a stable code.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { StoqError } from "../../errors.ts";
import { buf } from "./_bytes.ts";

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

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

/** Throws `NAME_NOT_ALLOWED` or `SAN_IPV4` unless every name is a DNS name the policy allows. */
export function checkNames(
  names: readonly string[],
  allowed: readonly string[],
): void {
  for (const name of names) {
    if (IPV4.test(name)) {
      throw new StoqError(
        "SAN_IPV4",
        `The CSR names IPv4 address ${name}: STOQ is IPv6-only, use DNS names`,
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

/**
 * Applies the issuance policy to a CSR: a PKCS#10 request for an ECDSA P-256 or Ed25519 key,
 * signed by that key, naming only allowed DNS names.
 *
 * @param csr The request, PEM or DER.
 * @param allowed The allowed name patterns.
 * @returns The key and names.
 * @throws {StoqError} `CSR_MALFORMED`, `CSR_BAD_SIGNATURE`, `KEY_UNSUPPORTED`, `SAN_IPV4` or
 * `NAME_NOT_ALLOWED`.
 */
export async function checkCsr(
  csr: string | Uint8Array,
  allowed: readonly string[],
): Promise<CheckedRequest> {
  let req: x509.Pkcs10CertificateRequest;
  try {
    req = new x509.Pkcs10CertificateRequest(
      typeof csr === "string" ? csr : buf(csr),
    );
  } catch (cause) {
    throw new StoqError(
      "CSR_MALFORMED",
      "Cannot parse the CSR: send a PKCS#10 request as PEM or DER",
      { cause },
    );
  }
  let alg: { name?: string; namedCurve?: string };
  try {
    alg = req.publicKey.algorithm as typeof alg;
  } catch (cause) {
    throw new StoqError(
      "KEY_UNSUPPORTED",
      "The CSR's key algorithm is unknown: use ECDSA P-256",
      { cause },
    );
  }
  const ok = (alg.name === "ECDSA" && alg.namedCurve === "P-256") ||
    alg.name === "Ed25519";
  if (!ok) {
    throw new StoqError(
      "KEY_UNSUPPORTED",
      `The CSR's key is ${alg.name}${
        alg.namedCurve ? ` ${alg.namedCurve}` : ""
      }: use ECDSA P-256 or Ed25519`,
    );
  }
  let valid = false;
  try {
    valid = await req.verify();
  } catch {
    valid = false;
  }
  if (!valid) {
    throw new StoqError(
      "CSR_BAD_SIGNATURE",
      "The CSR's signature does not verify: sign it with its own key",
    );
  }
  const names: string[] = [];
  let sanExt: x509.SubjectAlternativeNameExtension | undefined;
  try {
    const raw = req.extensions.find((e) => e.type === "2.5.29.17");
    if (raw) sanExt = new x509.SubjectAlternativeNameExtension(raw.rawData);
  } catch (cause) {
    throw new StoqError(
      "CSR_MALFORMED",
      "The CSR's subjectAltName cannot be parsed",
      { cause },
    );
  }
  for (const item of sanExt?.names.items ?? []) {
    if (item.type === "ip" && item.value.includes(".")) {
      throw new StoqError(
        "SAN_IPV4",
        `The CSR names IPv4 address ${item.value}: STOQ is IPv6-only, use DNS names`,
      );
    }
    if (item.type !== "dns") {
      throw new StoqError(
        "NAME_NOT_ALLOWED",
        `The CSR names a ${item.type} entry: only DNS names are issued`,
      );
    }
    names.push(item.value.toLowerCase());
  }
  if (names.length === 0) {
    const cn = req.subjectName.getField("CN")[0];
    if (cn) names.push(cn.toLowerCase());
  }
  if (names.length === 0) {
    throw new StoqError(
      "NAME_NOT_ALLOWED",
      "The CSR names nothing: add a DNS subjectAltName",
    );
  }
  checkNames(names, allowed);
  return {
    spki: new Uint8Array(req.publicKey.rawData),
    names: [...new Set(names)],
  };
}
