/**
 * Where a Phoenix app's certificate comes from: by default a per-user TrustChain CA kept in the
 * user's data directory and created on first use (the way mkcert makes local certificates
 * trusted), so that two apps of one user trust each other with no set-up; or a remote CA node
 * reached over STOQ.
 *
 * @module
 */

import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { StoqError } from "../errors.ts";
import type { StoqEndpoint } from "../transport/mod.ts";
import {
  CertificateAuthority,
  evidenceFromServices,
  evidenceSource,
  Federation,
  type ProvisionedIdentity,
  SqliteCaStore,
  TrustChainClient,
} from "../trustchain/mod.ts";

/** The CA every Phoenix app of a user shares, and the names its certificates may carry. */
const USER_CA_NAME = "stoq-user";
const DOMAIN = "stoq.local";

/**
 * The per-user data directory: `$STOQ_HOME`, else `$XDG_DATA_HOME/stoq`, else
 * `~/.local/share/stoq`.
 *
 * @example Where the per-user CA lives
 * ```ts
 * import { phoenixDataDir } from "../../mod.ts";
 * console.log(phoenixDataDir().endsWith("stoq") || Deno.env.has("STOQ_HOME")); // true
 * ```
 */
export function phoenixDataDir(): string {
  const env = (name: string) => Deno.env.get(name) || undefined;
  const home = env("STOQ_HOME");
  if (home) return home;
  const xdg = env("XDG_DATA_HOME");
  if (xdg) return `${xdg}/stoq`;
  const user = env("HOME");
  if (!user) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      "Cannot find a data directory for the per-user CA: set STOQ_HOME (or XDG_DATA_HOME, or HOME)",
    );
  }
  return `${user}/.local/share/stoq`;
}

/** A TrustChain CA node to provision from, instead of the per-user CA. */
export interface RemoteTrustChain {
  /** The node's TrustChain service, `"[2001:db8::1]:8443"` or `"host:port"`. */
  service: string;
  /** PEM roots the service's certificate must chain to (the node's CA root). */
  roots?: string[];
  /** A file holding those roots (the node writes its root to one). */
  rootFile?: string;
  /**
   * The name the service's certificate carries.
   * @default {"trustchain.stoq.local"}
   */
  serverName?: string;
}

/**
 * What an app needs to present itself and to check its peers: a TrustChain identity checked
 * against a federation, or a fixed certificate checked against CA roots.
 */
export type AppIdentity =
  | {
    kind: "trustchain";
    /** Gets a new certificate (first, and at each renewal). */
    provision(): Promise<ProvisionedIdentity>;
    /** Validates peers: chain to a federation member, embedded SCT, transparency proof. */
    federation: Federation;
    /** Releases the CA or the service connection. */
    close(): Promise<void>;
  }
  | {
    kind: "static";
    cert: string;
    key: string;
    /** Roots peers' certificates must chain to. */
    caCerts: string[];
    close(): Promise<void>;
  };

/** A fixed certificate, for apps that manage their own (`autoCertificates: false`). */
export function staticIdentity(
  certificate: { cert: string; key: string; caCerts: string[] } | undefined,
): AppIdentity {
  if (
    typeof certificate?.cert !== "string" ||
    typeof certificate.key !== "string" ||
    !Array.isArray(certificate.caCerts) || certificate.caCerts.length === 0
  ) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      "Cannot start without automatic certificates unless 'certificate' gives { cert, key, caCerts } (PEM)",
    );
  }
  return {
    kind: "static",
    cert: certificate.cert,
    key: certificate.key,
    caCerts: certificate.caCerts,
    close: () => Promise.resolve(),
  };
}

/** Splits `"[addr]:port"` / `"host:port"`. */
export function parseTarget(
  target: string,
  param = "target",
): { hostname: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(target) ??
    /^([^:\[\]]+):(\d+)$/.exec(target);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot use '${param}' as it must be "[ipv6]:port" or "host:port": current value is ${
        JSON.stringify(target)
      }`,
    );
  }
  return { hostname: m[1], port };
}

// The per-user CA, opened once per process and shared by the apps in it.
const userCas = new Map<
  string,
  { ca: Promise<CertificateAuthority>; users: number }
>();

async function openUserCa(dir: string): Promise<CertificateAuthority> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  return await CertificateAuthority.open({
    name: USER_CA_NAME,
    store: new SqliteCaStore(`${dir}/ca.db`),
    domain: DOMAIN,
    allowedNames: [`*.${DOMAIN}`, "localhost", "::1"],
  });
}

/**
 * The names an app's certificate carries: its name under the CA's domain, and `localhost` and
 * `::1` for local use.
 */
export function appNames(app: string, domain = DOMAIN): string[] {
  return [`${app}.${domain}`, "localhost", "::1"];
}

/** What a certificate says about its holder. */
export interface CertificateSummary {
  /** The PEM chain presented: leaf first. */
  pem: string;
  /** The DNS names and IPv6 addresses of the leaf. */
  names: string[];
  /** When the leaf expires. */
  notAfter: Date;
}

/** The names and expiry of the leaf of a PEM chain. */
export function summarize(pem: string): CertificateSummary {
  const leaf = new x509.X509Certificate(pem);
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  return {
    pem,
    names: san?.names.items
      .filter((n) => n.type === "dns" || n.type === "ip")
      .map((n) => n.value) ?? [],
    notAfter: leaf.notAfter,
  };
}

/** A key and a CSR for `names` (WebCrypto P-256; the key never leaves this process). */
async function keyAndCsr(
  names: string[],
): Promise<{ csr: string; key: string }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: names[0].length <= 64 ? `CN=${names[0]}` : "",
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.SubjectAlternativeNameExtension(
        names.map((value) => ({
          type: value.includes(":") ? "ip" as const : "dns" as const,
          value,
        })),
      ),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return {
    csr: csr.toString("pem"),
    key: x509.PemConverter.encode(pkcs8, "PRIVATE KEY"),
  };
}

/**
 * Provisions an identity carrying several DNS names from a local CA: a new key made here, a
 * CSR for `names` (the first is the CN), issued by `ca` under its policy.
 *
 * @param ca The CA.
 * @param names The DNS names.
 * @param lifetimeMs The certificate's lifetime (the CA's default when undefined).
 * @returns `{ cert, key }` for a listener (chain: leaf, root), with the proof.
 */
export async function provisionNames(
  ca: CertificateAuthority,
  names: string[],
  lifetimeMs?: number,
): Promise<ProvisionedIdentity> {
  const { csr, key } = await keyAndCsr(names);
  const issued = await ca.issue(
    csr,
    lifetimeMs === undefined ? {} : { lifetimeMs },
  );
  return {
    ...issued,
    cert: `${issued.pem}\n${ca.rootPem}\n`,
    key,
    chainDer: [issued.der, ca.rootDer],
  };
}

/**
 * The per-user CA's identity source for `app` (the CA is created on first use in `dataDir`).
 */
export async function userCaIdentity(
  app: string,
  dataDir: string,
): Promise<AppIdentity> {
  let shared = userCas.get(dataDir);
  if (!shared) {
    shared = { ca: openUserCa(dataDir), users: 0 };
    userCas.set(dataDir, shared);
  }
  shared.users++;
  let ca: CertificateAuthority;
  try {
    ca = await shared.ca;
  } catch (err) {
    if (--shared.users === 0) userCas.delete(dataDir);
    throw err;
  }
  const bundle = { version: 1, members: [ca.member] };
  const federation = await Federation.create(
    { bundle, signatures: [await ca.endorse(bundle)] },
    { source: evidenceSource(ca) },
  );
  const names = appNames(app);
  let closed = false;
  return {
    kind: "trustchain",
    federation,
    provision: () => provisionNames(ca, names),
    async close() {
      if (closed) return;
      closed = true;
      if (--shared.users === 0) {
        userCas.delete(dataDir);
        await ca.close();
      }
    },
  };
}

/** Provisions `app` from a remote CA node and validates peers against its federation bundle. */
export async function remoteIdentity(
  app: string,
  endpoint: StoqEndpoint,
  remote: RemoteTrustChain,
): Promise<AppIdentity> {
  const { hostname, port } = parseTarget(remote.service, "trustChain.service");
  let roots = remote.roots;
  if (!roots && remote.rootFile) {
    roots = [await Deno.readTextFile(remote.rootFile)];
  }
  if (!roots?.length) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      "Cannot use a remote TrustChain without its root: pass trustChain({ service, roots }) or rootFile (the node writes its root to a file and serves it)",
    );
  }
  const client = await TrustChainClient.connect(endpoint, {
    hostname,
    port,
    roots,
    serverName: remote.serverName,
  });
  try {
    const signed = await client.bundle();
    if (!signed) {
      throw new StoqError(
        "BUNDLE_INVALID",
        `The TrustChain node at ${remote.service} serves no federation bundle`,
      );
    }
    const federation = await Federation.create(signed, {
      source: evidenceFromServices(client),
    });
    return {
      kind: "trustchain",
      federation,
      provision: () => client.provision(app),
      close: () => client.close(),
    };
  } catch (err) {
    await client.close();
    throw err;
  }
}
