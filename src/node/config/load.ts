/**
 * Loading the node's configuration: the TOML file validated against {@linkcode NODE_SECTIONS},
 * defaults filled in from the schema, command-line overrides applied; what a reload changes; the
 * transport options a configuration means.
 *
 * @module
 */

import { StoqError } from "../../errors.ts";
import {
  configLine,
  type ConfigSchema,
  parseConfig,
  readConfigText,
} from "../../phoenix/config.ts";
import { phoenixDataDir } from "../../phoenix/identity.ts";
import type { StoqTransportOptions } from "../../transport/mod.ts";
import { NODE_SECTIONS, type NodeConfig } from "./schema.ts";

/** Command-line settings that win over the file (and survive reloads). */
export interface NodeOverrides {
  /** `--port N`: the UDP port of `[network] listen_addr`. */
  port?: number;
  /** `--metrics-port N`: the TCP port of `[metrics] listen_addr`. */
  metricsPort?: number;
  /** `--data-dir DIR`: `[node] data_dir`. */
  dataDir?: string;
}

/** A validated configuration and where it came from. */
export interface LoadedConfig {
  /** The settings, defaults filled in, overrides applied. */
  config: NodeConfig;
  /** The file, when there was one. */
  path?: string;
  /** The file's text (for the line numbers of later errors). */
  text?: string;
}

/**
 * A `CONFIG_INVALID` error naming the file, the line of `[section] key` and `message`.
 *
 * @param loaded The configuration the key came from.
 * @param section The section.
 * @param key The key.
 * @param message What is wrong and what is allowed.
 * @returns The error, to throw.
 */
export function keyError(
  loaded: LoadedConfig,
  section: string,
  key: string,
  message: string,
): StoqError {
  const where = loaded.path
    ? `${loaded.path}:${configLine(loaded.text ?? "", section, key)}: `
    : "";
  return new StoqError(
    "CONFIG_INVALID",
    `${where}'${key}' in [${section}] ${message}`,
  );
}

function withPort(addr: string, port: number): string {
  return addr.replace(/:\d+$/, `:${port}`);
}

function checkOverridePort(flag: string, port: number | undefined): void {
  if (
    port !== undefined &&
    (!Number.isInteger(port) || port < 0 || port > 65535)
  ) {
    throw new StoqError(
      "CONFIG_INVALID",
      `${flag} must be an integer from 0 to 65535: current value is ${port}`,
    );
  }
}

/** The defaults of `schema`'s keys, for the keys `data` leaves out. */
function withDefaults(
  schema: ConfigSchema,
  data: Record<string, unknown> | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(schema.properties ?? {})) {
    const value = data?.[key] ?? structuredClone(s.default);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/**
 * Validates TOML text as a node configuration and fills in the defaults.
 *
 * @param text The TOML text.
 * @param path The file's name, for errors.
 * @param overrides Command-line settings that win.
 * @returns The configuration.
 * @throws {StoqError} `CONFIG_INVALID`: one line naming the file, the line, the key, the value
 * and what is allowed; or the section that belongs to the application layer.
 */
export function parseNodeConfig(
  text: string | undefined,
  path?: string,
  overrides: NodeOverrides = {},
): LoadedConfig {
  checkOverridePort("--port", overrides.port);
  checkOverridePort("--metrics-port", overrides.metricsPort);
  if (overrides.dataDir !== undefined && overrides.dataDir.length === 0) {
    throw new StoqError(
      "CONFIG_INVALID",
      "--data-dir must name a directory: current value is empty",
    );
  }
  const data = text === undefined
    ? {}
    : parseConfig(text, path ?? "config", NODE_SECTIONS);
  const config = Object.fromEntries(
    Object.entries(NODE_SECTIONS).map((
      [name, schema],
    ) => [name, withDefaults(schema, data[name])]),
  ) as unknown as NodeConfig;
  if (overrides.port !== undefined) {
    config.network.listen_addr = withPort(
      config.network.listen_addr,
      overrides.port,
    );
  }
  if (overrides.metricsPort !== undefined) {
    config.metrics.listen_addr = withPort(
      config.metrics.listen_addr,
      overrides.metricsPort,
    );
  }
  if (overrides.dataDir !== undefined) {
    config.node.data_dir = overrides.dataDir;
  }
  return { config, path, text };
}

/**
 * Reads and validates a node configuration file; without a file, the defaults.
 *
 * @param path The TOML file, or `undefined` for the defaults.
 * @param overrides Command-line settings that win.
 * @returns The configuration.
 * @throws {StoqError} `CONFIG_INVALID`, also when the file cannot be read.
 */
export async function loadNodeConfig(
  path: string | undefined,
  overrides: NodeOverrides = {},
): Promise<LoadedConfig> {
  if (path === undefined) {
    return parseNodeConfig(undefined, undefined, overrides);
  }
  return parseNodeConfig(await readConfigText(path), path, overrides);
}

/** The node's data directory: `[node] data_dir`, else `<phoenixDataDir()>/node`. */
export function dataDirOf(config: NodeConfig): string {
  return config.node.data_dir ?? `${phoenixDataDir()}/node`;
}

/** What a reload changes, as `section.key` names. */
export interface ConfigChanges {
  /** Keys applied at once. */
  live: string[];
  /** Keys that take effect only after a restart. */
  restart: string[];
}

/**
 * The keys whose values differ between two configurations, split by how the node applies them
 * (the schema's `reload`).
 *
 * @param before The running configuration.
 * @param after The new one.
 * @returns The changed keys.
 */
export function configChanges(
  before: NodeConfig,
  after: NodeConfig,
): ConfigChanges {
  const changes: ConfigChanges = { live: [], restart: [] };
  for (const [section, schema] of Object.entries(NODE_SECTIONS)) {
    for (const [key, s] of Object.entries(schema.properties ?? {})) {
      const a = (before as unknown as Record<string, Record<string, unknown>>)[
        section
      ][key];
      const b = (after as unknown as Record<string, Record<string, unknown>>)[
        section
      ][key];
      if (JSON.stringify(a) === JSON.stringify(b)) continue;
      changes[s.reload === "live" ? "live" : "restart"].push(
        `${section}.${key}`,
      );
    }
  }
  return changes;
}

/**
 * The settings `[network]` gives connections: `high_performance` means BBR and large windows
 * unless set.
 *
 * @param config The configuration.
 * @returns Transport options for the listener.
 */
export function transportOptions(config: NodeConfig): StoqTransportOptions {
  const n = config.network;
  const high = n.quic_config === "high_performance";
  return {
    congestionControl: n.congestion_control ?? (high ? "bbr" : "cubic"),
    maxIdleTimeout: n.idle_timeout_ms,
    streamReceiveWindow: n.stream_receive_window ??
      (high ? 8 << 20 : 1 << 20),
    connectionReceiveWindow: n.connection_receive_window ??
      (high ? 64 << 20 : 16 << 20),
    maxConcurrentBidirectionalStreams: n.max_bidirectional_streams,
    maxConcurrentUnidirectionalStreams: n.max_unidirectional_streams,
    datagrams: n.datagrams,
  };
}
