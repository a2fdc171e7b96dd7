/**
 * What an endpoint keeps between connects: native configurations shared by every connection
 * with the same settings, ALPN, credentials and validation, and TLS session tickets per server
 * for resumption.
 *
 * A configuration costs an OpenSSL context, its certificates and trust store (milliseconds), so
 * it is made once and counted by its users; when the last one is gone it stays idle for the
 * next connect for {@linkcode IDLE_CONFIG_MS} (at most {@linkcode MAX_IDLE_CONFIGS} idle ones),
 * and the endpoint frees the rest when it closes.
 *
 * @module
 */

import { StoqError } from "../errors.ts";
import type { PeerCertificate } from "./connection.ts";
import type { Runtime } from "./runtime.ts";
import { statusError } from "./status.ts";

/** Milliseconds an unused configuration is kept for the next connect. */
export const IDLE_CONFIG_MS = 10_000;
/** Unused configurations kept at most. */
export const MAX_IDLE_CONFIGS = 8;
/** Servers whose latest session ticket an endpoint remembers. */
export const MAX_TICKETS = 1024;

/** PEM credentials and the shim's credential flags (`Cred`). */
export interface Credentials {
  flags: number;
  cert?: string;
  key?: string;
  ca?: string;
}

const encoder = new TextEncoder();

/**
 * Opens a native configuration (settings and ALPN as `encodeSettings`/`encodeAlpn` give them)
 * with credentials loaded from memory.
 *
 * @throws {StoqError} `INVALID_ARGUMENT` with OpenSSL's reason when the PEM material cannot be
 *   used; the configuration is closed again.
 */
export function openConfig(
  runtime: Runtime,
  settings: Uint8Array<ArrayBuffer>,
  alpn: Uint8Array<ArrayBuffer>,
  credentials: Credentials,
): Deno.PointerObject {
  const lib = runtime.lib;
  const status = new Int32Array(1);
  const cfg = lib.stoq_config_open(
    runtime.rt,
    settings,
    alpn,
    alpn.length,
    status,
  );
  if (cfg === null) {
    throw statusError(status[0], "create the QUIC configuration");
  }
  const cert = encoder.encode(credentials.cert ?? "");
  const key = encoder.encode(credentials.key ?? "");
  const ca = encoder.encode(credentials.ca ?? "");
  const err = new Uint8Array(512);
  const st = lib.stoq_config_load(
    cfg,
    credentials.flags,
    cert,
    cert.length,
    key,
    key.length,
    ca,
    ca.length,
    err,
    err.length,
  );
  key.fill(0);
  if (st !== 0) {
    lib.stoq_config_close(cfg);
    const reason = new TextDecoder().decode(err.subarray(0, err.indexOf(0)));
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot load the TLS credentials: ${
        reason || "msquic refused them"
      } (check that cert, key and caCerts are PEM and belong together)`,
      { status: st },
    );
  }
  return cfg;
}

/** A shared configuration; hand it back with {@linkcode ConfigCache.release}. */
export interface ConfigLease {
  readonly ptr: Deno.PointerObject;
  readonly key: string;
}

interface Entry extends ConfigLease {
  users: number;
  idleSince: number;
}

/** An endpoint's configurations, one per distinct key, counted by their users. */
export class ConfigCache {
  readonly #runtime: Runtime;
  readonly #entries = new Map<string, Entry>();
  #sweep: ReturnType<typeof setTimeout> | undefined;

  constructor(runtime: Runtime) {
    this.#runtime = runtime;
  }

  /** The configuration for `key`, opened with `open` on first use. */
  acquire(key: string, open: () => Deno.PointerObject): ConfigLease {
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { key, ptr: open(), users: 0, idleSince: 0 };
      this.#entries.set(key, entry);
    }
    entry.users++;
    return entry;
  }

  /** Drops one user. An unused configuration stays for a while for the next connect. */
  release(lease: ConfigLease): void {
    const entry = this.#entries.get(lease.key);
    if (entry !== lease || entry.users === 0) return;
    if (--entry.users > 0) return;
    entry.idleSince = performance.now();
    this.#trim(MAX_IDLE_CONFIGS, Infinity);
  }

  /** Native configurations open now (used and idle). */
  get size(): number {
    return this.#entries.size;
  }

  /** Frees every configuration. Call once no connection uses any of them. */
  close(): void {
    if (this.#sweep !== undefined) clearTimeout(this.#sweep);
    this.#sweep = undefined;
    for (const entry of this.#entries.values()) {
      this.#runtime.lib.stoq_config_close(entry.ptr);
    }
    this.#entries.clear();
  }

  /** Frees idle entries beyond `keep`, and those idle for `maxIdleMs` or longer. */
  #trim(keep: number, maxIdleMs: number): void {
    const idle = [...this.#entries.values()]
      .filter((e) => e.users === 0)
      .sort((a, b) => b.idleSince - a.idleSince);
    const now = performance.now();
    let kept = 0;
    idle.forEach((entry, rank) => {
      if (rank < keep && now - entry.idleSince < maxIdleMs) {
        kept++;
        return;
      }
      this.#entries.delete(entry.key);
      this.#runtime.lib.stoq_config_close(entry.ptr);
    });
    if (this.#sweep === undefined && kept > 0) {
      // A timer that never keeps the process alive frees what is still idle later.
      this.#sweep = setTimeout(() => {
        this.#sweep = undefined;
        this.#trim(0, IDLE_CONFIG_MS);
      }, IDLE_CONFIG_MS);
      Deno.unrefTimer(this.#sweep);
    }
  }
}

/** A session ticket, and the server certificate verified in the session it resumes. */
export interface KeptTicket {
  ticket: Uint8Array<ArrayBuffer>;
  peer: PeerCertificate | undefined;
}

/** The newest TLS session ticket per server, least recently used dropped first. */
export class TicketStore {
  readonly #tickets = new Map<string, KeptTicket>();

  /** The ticket for `server`, if one is kept. */
  get(server: string): KeptTicket | undefined {
    const ticket = this.#tickets.get(server);
    if (ticket) {
      this.#tickets.delete(server);
      this.#tickets.set(server, ticket);
    }
    return ticket;
  }

  /** Keeps `ticket` as the newest for `server`. */
  set(server: string, ticket: KeptTicket): void {
    this.#tickets.delete(server);
    this.#tickets.set(server, ticket);
    if (this.#tickets.size > MAX_TICKETS) {
      this.#tickets.delete(this.#tickets.keys().next().value!);
    }
  }

  /** Forgets every ticket. */
  clear(): void {
    this.#tickets.clear();
  }
}
