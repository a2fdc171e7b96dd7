/**
 * TOML configuration shared by Phoenix apps and the STOQ node: one JSON Schema per section,
 * which both validates (ajv) and documents (the node renders its reference from it). Errors name
 * the file, the line, the key, the value and what is allowed.
 *
 * @module
 */

import { Ajv, type ErrorObject, type ValidateFunction } from "npm:ajv@8.17.1";
import { parse, TomlError } from "npm:smol-toml@1.9.1";
import { StoqError } from "../errors.ts";
import type { PhoenixOptions } from "./phoenix.ts";

/** A JSON Schema (the subset the configuration uses). */
export interface ConfigSchema {
  type?: "object" | "string" | "integer" | "number" | "boolean" | "array";
  description?: string;
  default?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  pattern?: string;
  minLength?: number;
  /** A named check beyond JSON Schema: `"listen-addr"` (an IPv6 address and a port). */
  format?: "listen-addr";
  /** What a valid value looks like, in words, for error messages (else derived). */
  allowed?: string;
  /** The default as the reference should print it, when it is not one fixed value. */
  defaultText?: string;
  /**
   * How a running STOQ node applies a change when it reloads the file: at once (`"live"`) or
   * only after a restart (`"restart"`).
   */
  reload?: "live" | "restart";
  items?: ConfigSchema;
  minItems?: number;
  properties?: Record<string, ConfigSchema>;
  additionalProperties?: boolean;
}

/** What a `listen-addr` value must look like, for error messages. */
export const LISTEN_ADDR_ALLOWED =
  'an IPv6 address and a port from 0 to 65535, as "[::]:8443" (IPv4 and IPv4-mapped addresses are refused)';

/**
 * Whether `value` is `"[ipv6]:port"` with a real IPv6 literal (not IPv4-mapped) and a port from
 * 0 to 65535.
 */
export function isListenAddr(value: unknown): boolean {
  if (typeof value !== "string") return false;
  const m = /^\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})$/.exec(value);
  if (!m || Number(m[2]) > 65535) return false;
  let host: string;
  try {
    host = new URL(`http://[${m[1]}]/`).hostname.slice(1, -1);
  } catch {
    return false;
  }
  // IPv4-mapped (::ffff:a.b.c.d) is IPv4 in disguise.
  return !/^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(host);
}

/** `[network]`: where and how the transport runs. */
export const NETWORK_SECTION: ConfigSchema = {
  type: "object",
  description: "Where to accept connections and how the QUIC transport runs.",
  additionalProperties: false,
  properties: {
    listen_addr: {
      type: "string",
      description:
        'IPv6 address and UDP port to accept on, as "[address]:port" (IPv4 is refused).',
      format: "listen-addr",
      allowed: LISTEN_ADDR_ALLOWED,
      default: "[::]:8443",
    },
    max_connections: {
      type: "integer",
      description:
        "Connections open at most: incoming ones beyond it are refused (node), outgoing callers wait (Phoenix).",
      minimum: 1,
      maximum: 1_000_000,
      default: 10_000,
    },
    quic_config: {
      description:
        '"high_performance": msquic\'s max-throughput profile, large windows, BBR. "low_latency": the low-latency profile and default windows.',
      enum: ["high_performance", "low_latency"],
      default: "low_latency",
    },
    congestion_control: {
      description:
        "Congestion controller (default: bbr with high_performance, else cubic).",
      enum: ["cubic", "bbr"],
    },
    idle_timeout_ms: {
      type: "integer",
      description:
        "Milliseconds of silence before a connection closes; 0 keeps it open while keep-alives are answered.",
      minimum: 0,
      maximum: 2 ** 31,
      default: 30_000,
    },
    stream_receive_window: {
      type: "integer",
      description: "Initial per-stream receive window in bytes.",
      minimum: 1024,
      maximum: 2 ** 31,
      default: 1_048_576,
    },
    connection_receive_window: {
      type: "integer",
      description: "Connection-wide receive window in bytes.",
      minimum: 1024,
      maximum: 2 ** 31,
      default: 16_777_216,
    },
    max_bidirectional_streams: {
      type: "integer",
      description: "Bidirectional streams a peer may have open at once.",
      minimum: 0,
      maximum: 65535,
      default: 100,
    },
    max_unidirectional_streams: {
      type: "integer",
      description: "Unidirectional streams a peer may have open at once.",
      minimum: 0,
      maximum: 65535,
      default: 100,
    },
    datagrams: {
      type: "boolean",
      description: "Whether peers may send unreliable datagrams.",
      default: true,
    },
    alpn: {
      type: "array",
      description: "ALPN protocols served.",
      items: { type: "string" },
      minItems: 1,
    },
  },
};

/** `[trustchain]` for a Phoenix app: where its certificate comes from. */
export const PHOENIX_TRUSTCHAIN_SECTION: ConfigSchema = {
  type: "object",
  description: "Where the app's certificate comes from.",
  additionalProperties: false,
  properties: {
    service: {
      type: "string",
      description:
        'A TrustChain node to provision from, "[address]:port"; without it, the per-user CA.',
    },
    root_file: {
      type: "string",
      description:
        "A file with the node's CA root (PEM), to trust its service.",
    },
    data_dir: {
      type: "string",
      description:
        "Where the per-user CA lives (default: $STOQ_HOME, $XDG_DATA_HOME/stoq, ~/.local/share/stoq).",
    },
  },
};

/** Sections of the seed documents that belong to the application layer, and why. */
export const APPLICATION_SECTIONS: Record<string, string> = {
  routing: "routing belongs to the application layer, not the transport",
  chunking: "chunking belongs to the application layer, not the transport",
  edge: "edge caching belongs to the application layer, not the transport",
};

/**
 * The line (1-based) of `[section]`, or of `key` inside it (outside any section when `section`
 * is undefined); 0 when not found.
 */
export function configLine(
  text: string,
  section: string | undefined,
  key?: string,
): number {
  const lines = text.split("\n");
  let inSection = section === undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    const header = /^\[\s*([^\]\s]+)\s*\]/.exec(line);
    if (header) {
      inSection = header[1] === section;
      if (inSection && key === undefined) return i + 1;
      continue;
    }
    if (
      inSection && key !== undefined &&
      new RegExp(`^"?${key}"?\\s*=`).test(line)
    ) {
      return i + 1;
    }
  }
  return 0;
}

function describeAllowed(schema: ConfigSchema | undefined): string {
  if (!schema) return "";
  if (schema.allowed) return schema.allowed;
  if (schema.enum) {
    return `one of ${schema.enum.map((v) => JSON.stringify(v)).join(", ")}`;
  }
  const range = schema.minimum !== undefined || schema.maximum !== undefined
    ? ` from ${schema.minimum ?? "-∞"} to ${schema.maximum ?? "∞"}`
    : "";
  if (schema.type === "array") {
    const items = schema.items;
    return items?.enum
      ? `an array of values from ${
        items.enum.map((v) => JSON.stringify(v)).join(", ")
      }`
      : `an array of ${items?.type ?? "value"}s`;
  }
  return `${
    schema.type === "integer" ? "an integer" : `a ${schema.type}`
  }${range}`;
}

/**
 * Reads and validates a TOML file against `sections` (top-level tables and their schemas).
 *
 * @throws {StoqError} `CONFIG_INVALID` with one line naming the file, line, key, value and what
 *   is allowed.
 */
export async function loadConfig(
  path: string,
  sections: Record<string, ConfigSchema>,
): Promise<Record<string, Record<string, unknown>>> {
  return parseConfig(await readConfigText(path), path, sections);
}

/**
 * Reads a configuration file's text.
 *
 * @throws {StoqError} `CONFIG_INVALID` naming the file when it cannot be read.
 */
export async function readConfigText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (cause) {
    throw new StoqError(
      "CONFIG_INVALID",
      `${path}: cannot read the file (${(cause as Error).message})`,
      { cause },
    );
  }
}

// Compiled once per set of sections (module constants): compiling takes milliseconds, and the
// node parses its file at start and on every reload.
const validators = new WeakMap<object, ValidateFunction>();

function validatorFor(
  sections: Record<string, ConfigSchema>,
): ValidateFunction {
  let validate = validators.get(sections);
  if (!validate) {
    const ajv = new Ajv({ allErrors: true, strict: false });
    ajv.addFormat("listen-addr", { type: "string", validate: isListenAddr });
    validate = ajv.compile({
      type: "object",
      additionalProperties: false,
      properties: sections,
    });
    validators.set(sections, validate);
  }
  return validate;
}

/** Validates TOML text; `path` names it in errors. See {@linkcode loadConfig}. */
export function parseConfig(
  text: string,
  path: string,
  sections: Record<string, ConfigSchema>,
): Record<string, Record<string, unknown>> {
  let data: Record<string, unknown>;
  try {
    data = parse(text) as Record<string, unknown>;
  } catch (cause) {
    const where = cause instanceof TomlError ? `:${cause.line}` : "";
    throw new StoqError(
      "CONFIG_INVALID",
      `${path}${where}: not valid TOML: ${
        (cause as Error).message.split("\n")[0]
      }`,
      { cause },
    );
  }
  for (const name of Object.keys(data)) {
    if (APPLICATION_SECTIONS[name]) {
      throw new StoqError(
        "CONFIG_INVALID",
        `${path}:${
          configLine(text, name)
        }: section [${name}] is not a transport setting: ${
          APPLICATION_SECTIONS[name]
        }; remove it (allowed sections: ${
          Object.keys(sections).map((s) => `[${s}]`).join(", ")
        })`,
      );
    }
  }
  const validate = validatorFor(sections);
  if (validate(data)) return data as Record<string, Record<string, unknown>>;
  const error = (validate.errors as ErrorObject[])[0];
  const parts = error.instancePath.split("/").filter(Boolean);
  if (error.keyword === "additionalProperties") {
    const key =
      (error.params as { additionalProperty: string }).additionalProperty;
    if (parts.length === 0 && typeof data[key] !== "object") {
      throw new StoqError(
        "CONFIG_INVALID",
        `${path}:${
          configLine(text, undefined, key)
        }: unknown key '${key}' outside any section; keys belong in a section: ${
          Object.keys(sections).map((s) => `[${s}]`).join(", ")
        }`,
      );
    }
    if (parts.length === 0) {
      throw new StoqError(
        "CONFIG_INVALID",
        `${path}:${
          configLine(text, key)
        }: unknown section [${key}]; allowed sections: ${
          Object.keys(sections).map((s) => `[${s}]`).join(", ")
        }`,
      );
    }
    const allowed = Object.keys(sections[parts[0]]?.properties ?? {});
    throw new StoqError(
      "CONFIG_INVALID",
      `${path}:${configLine(text, parts[0], key)}: unknown key '${key}' in [${
        parts[0]
      }]; allowed keys: ${allowed.join(", ")}`,
    );
  }
  const [section, key] = parts;
  const keySchema = key
    ? sections[section]?.properties?.[key]
    : sections[section];
  let value: unknown = data;
  // The whole value of the key, also when one element of an array is what failed.
  for (const p of parts.slice(0, 2)) {
    value = (value as Record<string, unknown>)?.[p];
  }
  throw new StoqError(
    "CONFIG_INVALID",
    `${path}:${configLine(text, section, key)}: ${
      key ? `'${key}' in [${section}]` : `[${section}]`
    } is ${JSON.stringify(value)}, but must be ${
      describeAllowed(keySchema) || error.message
    }`,
  );
}

/** Splits `"[addr]:port"`. */
export function parseListenAddr(
  value: string,
): { hostname: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value);
  if (!m || Number(m[2]) > 65535) {
    throw new StoqError(
      "CONFIG_INVALID",
      `listen_addr must be "[ipv6]:port": current value is ${
        JSON.stringify(value)
      }`,
    );
  }
  return { hostname: m[1], port: Number(m[2]) };
}

/** Phoenix options from the `[network]` and `[trustchain]` sections of a validated file. */
export function phoenixOptionsFrom(
  config: Record<string, Record<string, unknown>>,
): PhoenixOptions {
  const network = config.network ?? {};
  const tc = config.trustchain ?? {};
  const options: PhoenixOptions = {};
  if (network.listen_addr !== undefined) {
    options.listen = parseListenAddr(network.listen_addr as string);
  }
  if (network.max_connections !== undefined) {
    options.maxConnections = network.max_connections as number;
  }
  if (network.quic_config !== undefined) {
    options.highPerformance = network.quic_config === "high_performance";
  }
  if (network.congestion_control !== undefined) {
    options.congestionControl = network.congestion_control as "cubic" | "bbr";
  }
  if (tc.service !== undefined) {
    options.trustChain = {
      service: tc.service as string,
      rootFile: tc.root_file as string | undefined,
    };
  }
  if (tc.data_dir !== undefined) options.dataDir = tc.data_dir as string;
  return options;
}
