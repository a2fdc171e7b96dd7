/**
 * A transparent pool of outgoing STOQ connections, per peer: live connections are reused, a new
 * stream goes to the connection with the fewest streams in use, dead connections are dropped and
 * replaced on next use, idle ones close after a timeout, and the pool-wide `maxConnections` is
 * never exceeded — callers beyond it wait (an `AbortSignal` gives up). The pool knows nothing of
 * certificates: the layer above hands it a `connect` function (and the endpoint resumes TLS
 * sessions on reconnects).
 *
 * @module
 */

import { StoqError } from "../errors.ts";
import type { StoqConnection } from "../transport/mod.ts";

/**
 * Options for {@linkcode ConnectionPool}.
 *
 * @example A pool over an endpoint
 * ```ts
 * import { ConnectionPool, type ConnectionPoolOptions, StoqEndpoint } from "../../mod.ts";
 * await using endpoint = new StoqEndpoint();
 * const options: ConnectionPoolOptions = {
 *   connect: (peer, signal) => {
 *     const [hostname, port] = [peer.slice(1, peer.lastIndexOf("]")), Number(peer.split(":").at(-1))];
 *     return endpoint.connect({ hostname, port, alpnProtocols: ["app"], signal });
 *   },
 *   maxConnections: 10,
 * };
 * await using pool = new ConnectionPool(options);
 * console.log(pool.stats().open); // 0
 * ```
 */
export interface ConnectionPoolOptions {
  /** Opens a new connection to `peer` (a key the caller chose, e.g. `"[::1]:9000"`). */
  connect(peer: string, signal?: AbortSignal): Promise<StoqConnection>;
  /**
   * Connections open at most, across all peers (including those being opened).
   * @default {100}
   */
  maxConnections?: number;
  /**
   * Milliseconds a connection with no stream in use stays open.
   * @default {30000}
   */
  idleTimeoutMs?: number;
  /**
   * Streams in use on one connection before the pool opens another to the same peer (within
   * `maxConnections`); match the peer's stream limit.
   * @default {100}
   */
  streamsPerConnection?: number;
}

/**
 * How the pool stands.
 *
 * @example Reading pool figures
 * ```ts
 * import type { ConnectionPoolStats } from "../../mod.ts";
 * const show = (s: ConnectionPoolStats) => `${s.open} open, ${s.idle} idle, ${s.waiting} waiting`;
 * console.log(typeof show);
 * ```
 */
export interface ConnectionPoolStats {
  /** Connections open, and being opened. */
  open: number;
  /** Open connections with a stream in use. */
  busy: number;
  /** Open connections with no stream in use. */
  idle: number;
  /** Callers waiting for room under `maxConnections`. */
  waiting: number;
  /** Connects that needed a new connection, by how its TLS handshake went. */
  handshakes: { cold: number; resumed: number };
  /** Uses served by a connection already open. */
  reused: number;
  /** Connections dropped because they died or were evicted (idle closes not counted). */
  evicted: number;
}

/** One pooled connection. */
interface Entry {
  readonly peer: string;
  readonly conn: StoqConnection;
  /** Streams in use (leases held). */
  active: number;
  lastUsed: number;
  /** Kept open even when idle (multiplexing). */
  pinned: boolean;
  dead: boolean;
}

/**
 * A connection lent by the pool; {@linkcode PoolLease.release} gives it back (idempotent).
 *
 * @example Using a lease
 * ```ts
 * import type { PoolLease } from "../../mod.ts";
 * async function ping(lease: PoolLease) {
 *   try {
 *     const { writable } = await lease.connection.createBidirectionalStream();
 *     await writable.close();
 *   } finally {
 *     lease.release();
 *   }
 * }
 * console.log(typeof ping);
 * ```
 */
export interface PoolLease extends Disposable {
  /** The connection. */
  readonly connection: StoqConnection;
  /** Whether this acquire opened the connection (`connection.resumed` says how), or reused one. */
  readonly opened: boolean;
  /** Gives the connection back to the pool. */
  release(): void;
}

function checkPositiveInt(
  value: unknown,
  name: string,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot create the pool as '${name}' must be a positive integer: current value is ${
        String(value)
      }`,
    );
  }
  return value;
}

/**
 * A pool of outgoing connections per peer.
 *
 * @example Two streams to one peer share a connection
 * ```ts
 * import { ConnectionPool, makeDevCertificates, StoqEndpoint } from "../../mod.ts";
 * const { cert, key, ca } = await makeDevCertificates();
 * await using server = new StoqEndpoint({ hostname: "::1", port: 0 });
 * const listener = server.listen({ alpnProtocols: ["app"], cert, key });
 * (async () => {
 *   for await (const conn of listener) {
 *     (async () => {
 *       for await (const s of conn.incomingBidirectionalStreams) s.readable.pipeTo(s.writable).catch(() => {});
 *     })().catch(() => {});
 *   }
 * })();
 * await using client = new StoqEndpoint();
 * await using pool = new ConnectionPool({
 *   connect: (_peer, signal) =>
 *     client.connect({ hostname: "::1", port: listener.addr.port, alpnProtocols: ["app"], caCerts: [ca], signal }),
 * });
 * for (let i = 0; i < 2; i++) {
 *   using lease = await pool.acquire("server");
 *   const { readable, writable } = await lease.connection.createBidirectionalStream();
 *   await writable.close();
 *   for await (const _ of readable) continue;
 * }
 * console.log(pool.stats().handshakes.cold, pool.stats().reused); // 1 1
 * ```
 */
export class ConnectionPool implements AsyncDisposable {
  readonly #connect: ConnectionPoolOptions["connect"];
  readonly #max: number;
  readonly #idleMs: number;
  readonly #perConnection: number;
  readonly #byPeer = new Map<string, Entry[]>();
  /** Connections being opened, per peer (counted in `#open`). */
  readonly #opening = new Map<string, Promise<Entry>[]>();
  #open = 0;
  #waiters: (() => void)[] = [];
  #sweep: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  readonly #stats = { cold: 0, resumed: 0, reused: 0, evicted: 0 };

  /**
   * Creates a pool; nothing opens until the first {@linkcode acquire}.
   *
   * @throws {StoqError} `INVALID_ARGUMENT` for bad options.
   */
  constructor(options: ConnectionPoolOptions) {
    if (typeof options?.connect !== "function") {
      throw new StoqError(
        "INVALID_ARGUMENT",
        "Cannot create the pool as 'connect' must be a function that opens a connection to a peer",
      );
    }
    this.#connect = options.connect;
    this.#max = checkPositiveInt(options.maxConnections, "maxConnections", 100);
    this.#idleMs = checkPositiveInt(
      options.idleTimeoutMs,
      "idleTimeoutMs",
      30_000,
    );
    this.#perConnection = checkPositiveInt(
      options.streamsPerConnection,
      "streamsPerConnection",
      100,
    );
  }

  /**
   * Lends a live connection to `peer`: the least busy open one while it has room for another
   * stream, else a new one when `maxConnections` allows, else the least busy one anyway (its
   * streams then wait for the peer's credit). With no connection to `peer` and no room, waits
   * until one closes (idle ones elsewhere are closed to make room).
   *
   * @param peer The peer's key, handed to `connect`.
   * @param options `signal` gives up waiting or connecting (`ABORTED`).
   * @throws {StoqError} `ABORTED`, `CLOSED`, or what `connect` throws.
   */
  async acquire(
    peer: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<PoolLease> {
    const { entry, opened } = await this.#entryFor(peer, options.signal);
    return this.#lease(entry, opened);
  }

  /**
   * Keeps `count` connections to `peer` open (opening the missing ones now) and out of idle
   * closing, for striping data over them; 0 unpins.
   *
   * @returns The open connections to `peer`.
   * @throws {StoqError} `INVALID_ARGUMENT` when `count` exceeds `maxConnections`, `ABORTED`,
   *   `CLOSED`, or what `connect` throws.
   */
  async pin(
    peer: string,
    count: number,
    options: { signal?: AbortSignal } = {},
  ): Promise<StoqConnection[]> {
    if (!Number.isSafeInteger(count) || count < 0 || count > this.#max) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot keep connections open as 'count' must be an integer from 0 to maxConnections (${this.#max}): current value is ${count}`,
      );
    }
    while (this.#live(peer).length < count) {
      await this.#reserve(options.signal);
      await this.#openEntry(peer, options.signal);
    }
    const live = this.#live(peer);
    live.forEach((e, i) => e.pinned = i < count);
    return live.slice(0, count || live.length).map((e) => e.conn);
  }

  /** The open connections to `peer`. */
  connections(peer: string): StoqConnection[] {
    return this.#live(peer).map((e) => e.conn);
  }

  /**
   * Drops a connection from the pool and closes it (e.g. after its peer misbehaved); the next
   * {@linkcode acquire} opens a new one.
   */
  evict(conn: StoqConnection): void {
    for (const entries of this.#byPeer.values()) {
      const entry = entries.find((e) => e.conn === conn);
      if (entry) {
        this.#drop(entry, "evicted");
        conn.close();
        return;
      }
    }
  }

  /** How the pool stands. */
  stats(): ConnectionPoolStats {
    let busy = 0;
    let idle = 0;
    for (const entries of this.#byPeer.values()) {
      for (const e of entries) e.active > 0 ? busy++ : idle++;
    }
    return {
      open: this.#open,
      busy,
      idle,
      waiting: this.#waiters.length,
      handshakes: { cold: this.#stats.cold, resumed: this.#stats.resumed },
      reused: this.#stats.reused,
      evicted: this.#stats.evicted,
    };
  }

  /** Closes every pooled connection; waiting callers reject with `CLOSED`. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweep !== undefined) clearTimeout(this.#sweep);
    for (const wake of this.#waiters.splice(0)) wake();
    // Connections still being opened close as they arrive (see #openEntry).
    await Promise.allSettled([...this.#opening.values()].flat());
    const all = [...this.#byPeer.values()].flat();
    for (const e of all) e.conn.close();
    await Promise.all(all.map((e) => e.conn.finished));
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new StoqError("CLOSED", "Cannot use the pool: it is closed");
    }
  }

  #live(peer: string): Entry[] {
    return (this.#byPeer.get(peer) ?? []).filter((e) => !e.dead);
  }

  async #entryFor(
    peer: string,
    signal?: AbortSignal,
  ): Promise<{ entry: Entry; opened: boolean }> {
    while (true) {
      this.#checkOpen();
      if (signal?.aborted) throw abortError(signal);
      const live = this.#live(peer);
      const best = live.reduce<Entry | undefined>(
        (a, e) => (!a || e.active < a.active ? e : a),
        undefined,
      );
      if (best && best.active < this.#perConnection) {
        this.#stats.reused++;
        return { entry: best, opened: false };
      }
      const opening = this.#opening.get(peer);
      if (!best && opening?.length) {
        // Someone is opening one for this peer already: share it.
        try {
          const entry = await opening[0];
          if (!entry.dead) {
            this.#stats.reused++;
            return { entry, opened: false };
          }
        } catch { /* that attempt failed: try again below */ }
        continue;
      }
      if (this.#open < this.#max || this.#evictIdle()) {
        this.#open++;
        return { entry: await this.#openEntry(peer, signal), opened: true };
      }
      if (best) {
        // No room for another connection: share the least busy one (its streams wait for credit).
        this.#stats.reused++;
        return { entry: best, opened: false };
      }
      await this.#reserve(signal, false);
    }
  }

  /** Waits until a connection slot is free; with `take`, takes it. */
  async #reserve(signal?: AbortSignal, take = true): Promise<void> {
    while (true) {
      this.#checkOpen();
      if (signal?.aborted) throw abortError(signal);
      if (this.#open < this.#max || this.#evictIdle()) {
        if (take) this.#open++;
        return;
      }
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          this.#waiters = this.#waiters.filter((w) => w !== wake);
          reject(abortError(signal!));
        };
        const wake = () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
        this.#waiters.push(wake);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
  }

  /** Opens a connection for a slot already counted in `#open`. */
  async #openEntry(
    peer: string,
    signal: AbortSignal | undefined,
  ): Promise<Entry> {
    const attempt = (async () => {
      let conn: StoqConnection;
      try {
        conn = await this.#connect(peer, signal);
      } catch (err) {
        this.#open--;
        this.#wake();
        throw err;
      }
      if (conn.resumed) this.#stats.resumed++;
      else this.#stats.cold++;
      const entry: Entry = {
        peer,
        conn,
        active: 0,
        lastUsed: performance.now(),
        pinned: false,
        dead: false,
      };
      const entries = this.#byPeer.get(peer) ?? [];
      entries.push(entry);
      this.#byPeer.set(peer, entries);
      const died = () => this.#drop(entry, "died");
      conn.closed.then(died, died);
      if (this.#closed) conn.close();
      this.#scheduleSweep();
      return entry;
    })();
    const opening = this.#opening.get(peer) ?? [];
    opening.push(attempt);
    this.#opening.set(peer, opening);
    try {
      return await attempt;
    } finally {
      const list = this.#opening.get(peer)!;
      list.splice(list.indexOf(attempt), 1);
      if (list.length === 0) this.#opening.delete(peer);
    }
  }

  #lease(entry: Entry, opened: boolean): PoolLease {
    entry.active++;
    entry.lastUsed = performance.now();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      entry.active--;
      entry.lastUsed = performance.now();
      if (entry.active === 0) this.#scheduleSweep();
      this.#wake();
    };
    return {
      connection: entry.conn,
      opened,
      release,
      [Symbol.dispose]: release,
    };
  }

  /**
   * Forgets a connection and frees its slot: it died (or was evicted by the caller), or the
   * pool closes it because it is idle.
   */
  #drop(entry: Entry, why: "died" | "evicted" | "idle"): void {
    if (entry.dead) return;
    entry.dead = true;
    const entries = this.#byPeer.get(entry.peer);
    if (entries) {
      entries.splice(entries.indexOf(entry), 1);
      if (entries.length === 0) this.#byPeer.delete(entry.peer);
    }
    this.#open--;
    if (why !== "idle" && !this.#closed) this.#stats.evicted++;
    this.#wake();
  }

  /** Closes the least recently used idle, unpinned connection to make room. */
  #evictIdle(): boolean {
    let victim: Entry | undefined;
    for (const entries of this.#byPeer.values()) {
      for (const e of entries) {
        if (
          e.active === 0 && !e.pinned &&
          (!victim || e.lastUsed < victim.lastUsed)
        ) {
          victim = e;
        }
      }
    }
    if (!victim) return false;
    this.#drop(victim, "idle");
    victim.conn.close();
    return true;
  }

  #wake(): void {
    const waiter = this.#waiters.shift();
    waiter?.();
  }

  /** Closes connections idle for `idleTimeoutMs`; runs while some are idle. */
  #scheduleSweep(): void {
    if (this.#sweep !== undefined || this.#closed) return;
    this.#sweep = setTimeout(() => {
      this.#sweep = undefined;
      const now = performance.now();
      let idleLeft = false;
      for (const e of [...this.#byPeer.values()].flat()) {
        if (e.active > 0 || e.pinned) continue;
        if (now - e.lastUsed >= this.#idleMs) {
          this.#drop(e, "idle");
          e.conn.close();
        } else idleLeft = true;
      }
      if (idleLeft) this.#scheduleSweep();
    }, this.#idleMs);
    Deno.unrefTimer(this.#sweep);
  }
}

function abortError(signal: AbortSignal): StoqError {
  return new StoqError(
    "ABORTED",
    "Gave up waiting for a pooled connection: the signal was aborted",
    { cause: signal.reason },
  );
}
