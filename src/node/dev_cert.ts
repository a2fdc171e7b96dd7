/**
 * Development certificates: a throwaway CA and a leaf for localhost / ::1, for examples, tests
 * and benchmarks (the node itself uses its TrustChain CA). Production identities come from TrustChain.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";

/**
 * A CA certificate and a leaf certificate with its key, all PEM.
 *
 * @example Writing the dev CA for clients
 * ```ts
 * import { type DevCertificates, makeDevCertificates } from "../../mod.ts";
 * const certs: DevCertificates = await makeDevCertificates();
 * console.log(certs.ca.includes("BEGIN CERTIFICATE")); // true
 * ```
 */
export interface DevCertificates {
  /** The CA certificate clients trust. */
  ca: string;
  /** The leaf certificate (chain: leaf only; the CA is trusted separately). */
  cert: string;
  /** The leaf's private key, PKCS#8. */
  key: string;
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f; // positive
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(der)));
  return `-----BEGIN ${label}-----\n${
    b64.match(/.{1,64}/g)!.join("\n")
  }\n-----END ${label}-----\n`;
}

/**
 * Makes a CA and a leaf valid for the given DNS names and IPv6 addresses.
 *
 * @example
 * ```ts ignore
 * import { makeDevCertificates } from "./dev_cert.ts";
 * const { ca, cert, key } = await makeDevCertificates();
 * ```
 */
export async function makeDevCertificates(
  options: { dns?: string[]; ip?: string[]; days?: number } = {},
): Promise<DevCertificates> {
  const dns = options.dns ?? ["localhost"];
  const ip = options.ip ?? ["::1"];
  const days = options.days ?? 30;
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + days * 86_400_000);
  const caKeys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=STOQ development CA",
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const leafKeys = await crypto.subtle.generateKey(ALG, true, [
    "sign",
    "verify",
  ]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${dns[0] ?? ip[0]}`,
    issuer: ca.subject,
    notBefore,
    notAfter,
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([
        ...dns.map((value) => ({ type: "dns" as const, value })),
        ...ip.map((value) => ({ type: "ip" as const, value })),
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", leafKeys.privateKey);
  return {
    ca: ca.toString("pem") + "\n",
    cert: leaf.toString("pem") + "\n",
    key: toPem(pkcs8, "PRIVATE KEY"),
  };
}

/**
 * The development certificates in `dir` (`ca.pem`, `cert.pem`, `key.pem`), made on first use:
 * what the benchmarks' servers and the C baselines load.
 *
 * @param dir The folder.
 * @returns The PEM texts.
 */
export async function loadDevCertificates(
  dir: string,
): Promise<DevCertificates> {
  const files = {
    ca: `${dir}/ca.pem`,
    cert: `${dir}/cert.pem`,
    key: `${dir}/key.pem`,
  };
  try {
    return {
      ca: await Deno.readTextFile(files.ca),
      cert: await Deno.readTextFile(files.cert),
      key: await Deno.readTextFile(files.key),
    };
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const made = await makeDevCertificates({
    dns: ["localhost"],
    ip: ["::1"],
    days: 365,
  });
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(files.ca, made.ca);
  await Deno.writeTextFile(files.cert, made.cert);
  await Deno.writeTextFile(files.key, made.key, { mode: 0o600 });
  return made;
}
