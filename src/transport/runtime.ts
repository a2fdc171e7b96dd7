/**
 * One msquic registration per execution profile, the completion-queue pump that drains it in
 * batches, and the submission queue that hands many operations to the shim in one call.
 *
 * @module
 */

import {
  type CloseKind,
  Count,
  type Op,
  openLibrary,
  Pool,
  Records,
  RtFlags,
  type StoqSymbols,
} from "../../ffi/mod.ts";
import { yieldTask } from "./tick.ts";
import { StoqError } from "../errors.ts";
import { statusError } from "./status.ts";

/** Handles record `i` of a batch addressed to one native object. Must not throw. */
export type EventSink = (records: Records, i: number) => void;

/**
 * msquic execution profiles.
 *
 * @example A throughput-oriented endpoint
 * ```ts
 * import type { ExecutionProfile } from "../../mod.ts";
 * const profile: ExecutionProfile = "max-throughput";
 * console.log(profile);
 * ```
 */
export type ExecutionProfile = "low-latency" | "max-throughput";

const EVENT_BATCH = 1024;
const SUBMIT_BATCH = 256;
// While traffic flows the pump yields a macrotask turn at least this often (milliseconds), so
// that timers and other I/O on the JS thread are not starved by a busy transfer.
const YIELD_MS = 2;
// The pump drains the queue without sleeping while records keep arriving and parks in io_uring
// once it is empty: an idle endpoint costs nothing. It does not spin before parking: on two
// cores a 50 µs spin took CPU from msquic's threads and the peer (sequential connects 950 vs
// 1140 per second, 100-stream uploads 7.1–8.0 vs 8.3–8.4 Gbit/s) for a 5–10 % faster
// request/response echo.

type Completion = (status: number) => void;

/** Slabs kept at most by the send pool (64 MiB); writers wait for slots beyond it. */
export const MAX_POOL_SLABS = 16;
// A pool whose slots are all free for this long gives its pages back to the kernel.
const POOL_TRIM_MS = 2000;

/**
 * The send pool: slots of shim memory that msquic sends from. Writes are copied into a slot
 * once (or filled in place through `getWriteBuffer()`); a slot is msquic's until its
 * SEND_COMPLETE and JS's again after. Slabs stay mapped while the runtime lives.
 */
export class SendPool {
  readonly #lib: StoqSymbols;
  readonly #rt: Deno.PointerObject;
  readonly #slabs: Uint8Array<ArrayBuffer>[] = [];
  readonly #bases: number[] = [];
  #free: number[] = [];
  #inUse = 0;
  #waiters: ((slot: number) => void)[] = [];
  #trim: ReturnType<typeof setTimeout> | undefined;

  constructor(lib: StoqSymbols, rt: Deno.PointerObject) {
    this.#lib = lib;
    this.#rt = rt;
  }

  /**
   * A free slot, growing the pool when it may; undefined when every slot is in use (or others
   * already wait for one: slots go to waiters in turn).
   */
  take(): number | undefined {
    if (this.#waiters.length > 0) return undefined;
    let slot = this.#free.pop();
    if (slot === undefined && this.#slabs.length < MAX_POOL_SLABS) {
      slot = this.#grow();
    }
    if (slot !== undefined) this.#taken();
    return slot;
  }

  /**
   * Calls `give` with a slot once one comes back (from within `release()`). Waiters are served
   * in order, one slot each, so many blocked writers cost nothing per returned slot but the one
   * handed over.
   *
   * @returns Withdraws the wait (`give` is then never called).
   */
  waitSlot(give: (slot: number) => void): () => void {
    // Slots come back with SEND_COMPLETE records, which wake JS only when asked.
    if (this.#waiters.length === 0) this.#lib.stoq_pool_wake(this.#rt);
    this.#waiters.push(give);
    return () => {
      const at = this.#waiters.indexOf(give);
      if (at >= 0) this.#waiters.splice(at, 1);
    };
  }

  /** Returns a slot (its send completed or never started). */
  release(slot: number): void {
    this.#inUse--;
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#taken();
      if (this.#waiters.length > 0) this.#lib.stoq_pool_wake(this.#rt);
      waiter(slot);
      return;
    }
    this.#free.push(slot);
    if (this.#inUse === 0 && this.#trim === undefined) {
      this.#trim = setTimeout(() => {
        this.#trim = undefined;
        if (this.#inUse > 0) return;
        for (let i = 0; i < this.#slabs.length; i++) {
          this.#lib.stoq_pool_trim(this.#rt, i);
        }
      }, POOL_TRIM_MS);
      Deno.unrefTimer(this.#trim);
    }
  }

  #taken(): void {
    this.#inUse++;
    if (this.#trim !== undefined) {
      clearTimeout(this.#trim);
      this.#trim = undefined;
    }
  }

  /** The slot's memory (a view over the slab, kept by the pool). */
  bytes(slot: number): Uint8Array<ArrayBuffer> {
    const off = (slot % Pool.SLAB_SLOTS) * Pool.SLOT_SIZE;
    return this.#slabs[Math.floor(slot / Pool.SLAB_SLOTS)].subarray(
      off,
      off + Pool.SLOT_SIZE,
    );
  }

  /** A fresh ArrayBuffer over the slot, which JS can detach on its own (getWriteBuffer). */
  lend(slot: number): ArrayBuffer {
    const address = this.#bases[Math.floor(slot / Pool.SLAB_SLOTS)] +
      (slot % Pool.SLAB_SLOTS) * Pool.SLOT_SIZE;
    return Deno.UnsafePointerView.getArrayBuffer(
      Deno.UnsafePointer.create(BigInt(address))!,
      Pool.SLOT_SIZE,
    );
  }

  /** Slots in use (taken and not yet released). */
  get inUse(): number {
    return this.#inUse;
  }

  #grow(): number | undefined {
    const first = new Uint32Array(1);
    const ptr = this.#lib.stoq_pool_grow(this.#rt, first);
    if (ptr === null) return undefined;
    const bytes = Pool.SLAB_SLOTS * Pool.SLOT_SIZE;
    this.#slabs.push(
      new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(ptr, bytes)),
    );
    this.#bases.push(Number(Deno.UnsafePointer.value(ptr)));
    // Lowest slot last, so it is taken first.
    for (let i = Pool.SLAB_SLOTS - 1; i > 0; i--) this.#free.push(first[0] + i);
    return first[0];
  }
}

/** Shared per-process runtime; endpoints hold references to it. */
export class Runtime {
  static #byProfile = new Map<ExecutionProfile, Runtime>();

  readonly lib: StoqSymbols;
  readonly rt: Deno.PointerObject;
  readonly profile: ExecutionProfile;
  /** Send buffers msquic sends from. */
  readonly pool: SendPool;
  readonly #sinks = new Map<number, EventSink>();
  readonly #events = new Records(EVENT_BATCH);
  readonly #ops = new Records(SUBMIT_BATCH);
  readonly #opDone: (Completion | undefined)[] = [];
  readonly #opKeep: (Uint8Array | undefined)[] = [];
  #opCount = 0;
  // Operations that go down after everything else queued in this turn (deferred starts).
  #lastOps: [number, Deno.PointerObject, bigint, bigint][] = [];
  #flushScheduled = false;
  #refs = 0;
  #pump: Promise<void> | undefined;
  // Handles to close, as (kind, handle) pairs, and the batch closing the previous ones.
  #toClose: bigint[] = [];
  #closeWaiters: (() => void)[] = [];
  #closing: Promise<void> = Promise.resolve();
  #closeRunning = false;
  #idleWaiters: (() => void)[] = [];

  private constructor(
    lib: StoqSymbols,
    rt: Deno.PointerObject,
    profile: ExecutionProfile,
  ) {
    this.lib = lib;
    this.rt = rt;
    this.profile = profile;
    this.pool = new SendPool(lib, rt);
  }

  /**
   * The runtime for `profile`, opened on first use. `gso` false asks for UDP send segmentation
   * off, which only the process's first runtime can decide (the caller checks the outcome with
   * {@linkcode gso}).
   */
  static acquire(
    profile: ExecutionProfile,
    libraryPath?: string,
    gso?: boolean,
  ): Runtime {
    let runtime = Runtime.#byProfile.get(profile);
    if (!runtime) {
      const lib = openLibrary(libraryPath);
      const status = new Int32Array(1);
      const rt = lib.stoq_rt_open(
        profile === "max-throughput" ? 1 : 0,
        gso === false && Runtime.#byProfile.size === 0 ? RtFlags.NO_GSO : 0,
        status,
      );
      if (rt === null) {
        throw statusError(status[0], "open the msquic registration");
      }
      runtime = new Runtime(lib, rt, profile);
      Runtime.#byProfile.set(profile, runtime);
    }
    runtime.#refs++;
    runtime.#pump ??= runtime.#run();
    // A release that was waiting for the pump to stop is done: nothing of its own is pending.
    runtime.#resolveIdle();
    return runtime;
  }

  /**
   * Drops a reference; the pump stops (and its pending wait completes) at zero, once every
   * handle queued for closing is closed.
   */
  async release(): Promise<void> {
    if (this.#refs === 0) return;
    this.#refs--;
    await this.#closing;
    if (this.#refs > 0 || !this.#pump) return;
    const idle = new Promise<void>((resolve) =>
      this.#idleWaiters.push(resolve)
    );
    this.lib.stoq_rt_wake(this.rt);
    return idle;
  }

  /**
   * Closes a native stream or connection whose SHUTDOWN_COMPLETE was handled, off the JS
   * thread (msquic's close waits for its worker). Handles close in the order given here; while
   * one batch is closing, the next ones gather into the following batch. The promise resolves
   * once this one is freed.
   */
  closeHandle(
    kind: typeof CloseKind[keyof typeof CloseKind],
    handle: Deno.PointerObject,
  ): Promise<void> {
    this.#toClose.push(
      BigInt(kind),
      Deno.UnsafePointer.value(handle) as bigint,
    );
    const freed = new Promise<void>((resolve) =>
      this.#closeWaiters.push(resolve)
    );
    if (!this.#closeRunning) {
      this.#closeRunning = true;
      this.#closing = this.#closeLoop();
    }
    return freed;
  }

  async #closeLoop(): Promise<void> {
    // Handles queued later in this turn join the first batch.
    await null;
    while (this.#toClose.length > 0) {
      const items = new BigUint64Array(this.#toClose);
      const waiters = this.#closeWaiters;
      this.#toClose = [];
      this.#closeWaiters = [];
      await this.lib.stoq_close_batch(
        this.rt,
        new Uint8Array(items.buffer),
        items.length / 2,
      );
      for (const resolve of waiters) resolve();
    }
    this.#closeRunning = false;
  }

  #resolveIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Routes records for native object `id` to `sink`. */
  register(id: number, sink: EventSink): void {
    this.#sinks.set(id, sink);
  }

  /** Stops routing records for `id`. */
  unregister(id: number): void {
    this.#sinks.delete(id);
  }

  /** Whether msquic sends with UDP segmentation offload (undefined: not known yet). */
  get gso(): boolean | undefined {
    const v = this.lib.stoq_gso(this.rt);
    return v < 0 ? undefined : v === 1;
  }

  /** Live native objects and buffers, by `Count` index. */
  counts(): number[] {
    const out = new BigUint64Array(Count.MAX);
    this.lib.stoq_rt_counts(this.rt, new Uint8Array(out.buffer), Count.MAX);
    return Array.from(out, Number);
  }

  /**
   * Queues one operation. It reaches the shim with every other operation queued in this tick,
   * in one `stoq_submit` call. `keep` holds the bytes an operation points at until then.
   */
  submit(
    op: number,
    handle: Deno.PointerObject,
    a: bigint,
    b: bigint,
    c = 0n,
    done?: Completion,
    keep?: Uint8Array,
  ): void {
    if (this.#opCount === SUBMIT_BATCH) this.#flushBatch();
    const i = this.#opCount++;
    this.#ops.setOp(i, op, Deno.UnsafePointer.value(handle) as bigint, a, b, c);
    this.#opDone[i] = done;
    this.#opKeep[i] = keep;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /**
   * Queues an operation whose fields are numbers below 2^53 (no BigInt on the hot path);
   * `handle` is the native handle's address as a number.
   */
  submitNumbers(
    op: number,
    handle: number,
    a: number,
    b: number,
    c: number,
    d: number,
    done?: Completion,
  ): void {
    if (this.#opCount === SUBMIT_BATCH) this.#flushBatch();
    const i = this.#opCount++;
    this.#ops.setOpNumbers(i, op, handle, a, b, c, d);
    this.#opDone[i] = done;
    this.#opKeep[i] = undefined;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /**
   * Queues a send of `bytes` (copied by the shim when the batch is submitted) with `flags`
   * (`SendFlags` for streams).
   */
  submitBytes(
    op: typeof Op.STREAM_SEND_COPY | typeof Op.DGRAM_SEND,
    handle: Deno.PointerObject,
    bytes: Uint8Array,
    flags: number,
    done?: Completion,
  ): void {
    const ptr = bytes.byteLength === 0
      ? 0n
      : Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)) as bigint;
    this.submit(
      op,
      handle,
      ptr,
      BigInt(bytes.byteLength),
      BigInt(flags),
      done,
      bytes,
    );
  }

  /**
   * Queues an operation that reaches the shim after every other operation queued in this turn
   * (a deferred connection start follows the stream data it carries as 0-RTT).
   */
  submitLast(op: number, handle: Deno.PointerObject, a = 0n, b = 0n): void {
    this.#lastOps.push([op, handle, a, b]);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Hands every queued operation to the shim now. */
  flush(): void {
    this.#flushBatch();
    while (this.#lastOps.length > 0) {
      const last = this.#lastOps;
      this.#lastOps = [];
      for (const [op, handle, a, b] of last) this.submit(op, handle, a, b);
      this.#flushBatch();
    }
  }

  #flushBatch(): void {
    this.#flushScheduled = false;
    const n = this.#opCount;
    if (n === 0) return;
    this.#opCount = 0;
    const failed = this.lib.stoq_submit(this.rt, this.#ops.buffer, n);
    for (let i = 0; i < n; i++) {
      const done = this.#opDone[i];
      this.#opDone[i] = undefined;
      this.#opKeep[i] = undefined;
      if (done) done(failed === 0 ? 0 : this.#ops.status(i));
    }
  }

  async #run(): Promise<void> {
    const { lib, rt } = this;
    const events = this.#events;
    let lastYield = performance.now();
    while (this.#refs > 0) {
      const n = lib.stoq_rt_poll(rt, events.buffer, EVENT_BATCH);
      if (n === 0) {
        this.flush();
        const r = await lib.stoq_rt_wait(rt, -1);
        if (r < 0) {
          throw new StoqError(
            "NATIVE_ERROR",
            `stoq_rt_wait failed with ${r}`,
          );
        }
        lastYield = performance.now();
        continue;
      }
      this.#dispatch(n);
      this.flush();
      if (performance.now() - lastYield > YIELD_MS) {
        // A busy transfer must not starve timers and other I/O on the JS thread.
        await yieldTask();
        lastYield = performance.now();
      } else {
        // Let the microtasks this batch queued (stream readers, write continuations) run.
        await null;
      }
    }
    this.#pump = undefined;
    this.#resolveIdle();
  }

  /**
   * Hands a batch to its sinks. A separate (synchronous) frame, so that no sink stays referenced
   * from the pump's suspended frame: that would keep the last connection or stream alive until
   * the next record arrives.
   */
  #dispatch(n: number): void {
    const events = this.#events;
    for (let i = 0; i < n; i++) {
      const sink = this.#sinks.get(events.field(i, 0));
      if (sink) sink(events, i);
    }
  }
}
