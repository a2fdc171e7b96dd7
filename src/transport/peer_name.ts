/**
 * Server name checks for peer certificates. msquic's OpenSSL build checks the chain but not the
 * name, so clients check the leaf's subjectAltName here (RFC 6125: DNS names with a left-most
 * wildcard label, IP addresses compared as addresses).
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";

function normalizeIp(ip: string): string | undefined {
  if (!ip.includes(":")) return undefined; // IPv4 never names a STOQ peer
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

function dnsMatches(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, "");
  const n = name.toLowerCase().replace(/\.$/, "");
  if (!p.startsWith("*.")) return p === n;
  const dot = n.indexOf(".");
  return dot > 0 && n.slice(dot + 1) === p.slice(2);
}

/** Whether the DER certificate `leaf` names `serverName` (a DNS name or an IPv6 literal). */
export function certificateNames(
  leaf: Uint8Array,
  serverName: string,
): boolean {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(new Uint8Array(leaf));
  } catch {
    return false;
  }
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (!san) return false;
  const ip = normalizeIp(serverName);
  for (const entry of san.names.items) {
    if (ip !== undefined && entry.type === "ip") {
      const value = entry.value.includes(":")
        ? normalizeIp(entry.value)
        : undefined;
      if (value === ip) return true;
    } else if (
      ip === undefined && entry.type === "dns" &&
      dnsMatches(entry.value, serverName)
    ) {
      return true;
    }
  }
  return false;
}
