/**
 * IPv6-only address handling: IPv4 and IPv4-mapped addresses are refused before anything opens.
 *
 * @module
 */

import { StoqError } from "../errors.ts";

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function rejectIPv4(host: string): never {
  throw new StoqError(
    "IPV4_REJECTED",
    `STOQ is IPv6-only: '${host}' is an IPv4 address. Use an IPv6 address (for example ::1 or ::) or a host name with an AAAA record`,
  );
}

/** A host as the shim takes it: an IPv6 literal, or a name for msquic to resolve as IPv6. */
export interface ParsedHost {
  /** The IPv6 literal, compressed, without brackets; undefined for host names. */
  literal?: string;
  /** The name to use for SNI and certificate checks. */
  name: string;
}

/**
 * Validates a host. "localhost" means ::1.
 *
 * @throws {StoqError} `IPV4_REJECTED` for dotted quads and IPv4-mapped IPv6 addresses;
 *   `INVALID_ARGUMENT` for anything else that is not an IPv6 literal or a host name.
 */
export function parseHost(host: string, param = "hostname"): ParsedHost {
  const known = typeof host === "string" ? parsedHosts.get(host) : undefined;
  if (known) return known;
  const parsed = parseHostOnce(host, param);
  // A bounded memo: parsing a literal goes through the URL parser (microseconds per connect).
  if (parsedHosts.size >= MAX_PARSED_HOSTS) parsedHosts.clear();
  parsedHosts.set(host, Object.freeze(parsed));
  return parsed;
}

const MAX_PARSED_HOSTS = 1024;
const parsedHosts = new Map<string, ParsedHost>();

function parseHostOnce(host: string, param: string): ParsedHost {
  if (typeof host !== "string" || host.length === 0) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot use the address as '${param}' must be a non-empty string: current value is ${
        String(host)
      }`,
    );
  }
  const bare = host.startsWith("[") && host.endsWith("]")
    ? host.slice(1, -1)
    : host;
  if (IPV4.test(bare)) rejectIPv4(host);
  if (bare === "localhost") return { literal: "::1", name: "localhost" };
  if (bare.includes(":")) {
    let normalized: string;
    try {
      normalized = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
    } catch (cause) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot use the address as '${param}' must be an IPv6 literal or a host name: current value is ${host}`,
        { cause },
      );
    }
    // The WHATWG parser rewrites ::ffff:a.b.c.d to ::ffff:xxxx:xxxx, which is what we test.
    if (/^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(normalized)) {
      rejectIPv4(host);
    }
    return { literal: normalized, name: normalized };
  }
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(bare)) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot use the address as '${param}' must be an IPv6 literal or a host name: current value is ${host}`,
    );
  }
  return { name: bare };
}

/** Validates a port number. */
export function checkPort(
  port: unknown,
  param = "port",
  allowZero = true,
): number {
  if (
    typeof port !== "number" || !Number.isInteger(port) ||
    port < (allowZero ? 0 : 1) ||
    port > 65535
  ) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot use the port as '${param}' must be an integer from ${
        allowZero ? 0 : 1
      } to 65535: current value is ${String(port)}`,
    );
  }
  return port;
}

/**
 * Refuses addresses nothing can be connected to: the unspecified address `::` and multicast
 * (`ff00::/8`).
 *
 * @throws {StoqError} `INVALID_ARGUMENT`.
 */
export function checkConnectTarget(literal: string, param = "hostname"): void {
  if (literal === "::") {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot connect as '${param}' must name a host: current value is the unspecified address ::, which only listeners bind to (use ::1 for this machine)`,
    );
  }
  if (/^ff[0-9a-f]{2}:/.test(literal)) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot connect as '${param}' must be a unicast address: current value is the multicast address ${literal}`,
    );
  }
}

/** Formats 16 raw IPv6 bytes as a compressed literal. */
export function formatIPv6(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  }
  return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
}
