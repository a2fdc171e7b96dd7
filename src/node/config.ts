/**
 * The node's TOML configuration.
 *
 * @module
 */

import { parse } from "npm:smol-toml@1.9.1";
import { StoqError } from "../errors.ts";
import type { CongestionControl } from "../transport/mod.ts";

/** Parsed node configuration with defaults applied. */
export interface NodeConfig {
  /** IPv6 address to bind. */
  hostname: string;
  /** UDP port. */
  port: number;
  /** ALPN protocols served. */
  alpn: string[];
  /** Congestion controller. */
  congestionControl: CongestionControl;
  /** Idle timeout in milliseconds. */
  idleTimeoutMs: number;
  /** Folder for the development certificates. */
  devCertDir: string;
}

/** Defaults: `[::]:8443`, ALPN `stoq-echo`. */
export const DEFAULT_CONFIG: NodeConfig = {
  hostname: "::",
  port: 8443,
  alpn: ["stoq-echo"],
  congestionControl: "cubic",
  idleTimeoutMs: 30_000,
  devCertDir: "build/dev-certs",
};

function bad(what: string, value: unknown): never {
  throw new StoqError(
    "INVALID_ARGUMENT",
    `Cannot read the node configuration as ${what}: current value is ${
      JSON.stringify(value)
    }`,
  );
}

/**
 * Parses TOML text into a {@linkcode NodeConfig}.
 *
 * @example
 * ```ts
 * import { parseNodeConfig } from "./config.ts";
 * const config = parseNodeConfig('[network]\nlisten = "[::1]:9000"\n');
 * console.log(config.port); // 9000
 * ```
 */
export function parseNodeConfig(text: string): NodeConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (cause) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot parse the node configuration: ${cause}`,
      {
        cause,
      },
    );
  }
  const network = (doc.network ?? {}) as Record<string, unknown>;
  const tls = (doc.tls ?? {}) as Record<string, unknown>;
  const config = { ...DEFAULT_CONFIG };
  if (network.listen !== undefined) {
    const m = typeof network.listen === "string" &&
      /^\[([^\]]+)\]:(\d+)$/.exec(network.listen);
    if (!m) {
      bad("'network.listen' must look like \"[::]:8443\"", network.listen);
    }
    config.hostname = m[1];
    config.port = Number(m[2]);
  }
  if (network.alpn !== undefined) {
    if (
      !Array.isArray(network.alpn) ||
      !network.alpn.every((a) => typeof a === "string")
    ) {
      bad("'network.alpn' must be a list of strings", network.alpn);
    }
    config.alpn = network.alpn as string[];
  }
  if (network.congestion_control !== undefined) {
    const cc = network.congestion_control;
    if (cc !== "cubic" && cc !== "bbr") {
      bad("'network.congestion_control' must be cubic or bbr", cc);
    }
    config.congestionControl = cc;
  }
  if (network.idle_timeout_ms !== undefined) {
    const v = network.idle_timeout_ms;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      bad("'network.idle_timeout_ms' must be a positive integer", v);
    }
    config.idleTimeoutMs = v;
  }
  if (tls.dev_cert_dir !== undefined) {
    if (typeof tls.dev_cert_dir !== "string") {
      bad("'tls.dev_cert_dir' must be a path", tls.dev_cert_dir);
    }
    config.devCertDir = tls.dev_cert_dir;
  }
  return config;
}
