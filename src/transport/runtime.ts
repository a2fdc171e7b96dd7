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
  Records,
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
// After this many back-to-back batches the pump yields a macrotask turn so timers and other
// I/O on the JS thread are not starved by a busy transfer.
const BATCHES_PER_YIELD = 16;

type Completion = (status: number) => void;

/** Shared per-process runtime; endpoints hold references to it. */
export class Runtime {
  static #byProfile = new Map<ExecutionProfile, Runtime>();

  readonly lib: StoqSymbols;
  readonly rt: Deno.PointerObject;
  readonly profile: ExecutionProfile;
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
  #idleWaiters: (() => void)[] = [];

  private constructor(
    lib: StoqSymbols,
    rt: Deno.PointerObject,
    profile: ExecutionProfile,
  ) {
    this.lib = lib;
    this.rt = rt;
    this.profile = profile;
  }

  /** The runtime for `profile`, opened on first use. */
  static acquire(profile: ExecutionProfile, libraryPath?: string): Runtime {
    let runtime = Runtime.#byProfile.get(profile);
    if (!runtime) {
      const lib = openLibrary(libraryPath);
      const status = new Int32Array(1);
      const rt = lib.stoq_rt_open(profile === "max-throughput" ? 1 : 0, status);
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
   * thread (msquic's close waits for its worker). Handles close in the order given here, one
   * batch per turn; the promise resolves once this one is freed.
   */
  closeHandle(
    kind: typeof CloseKind[keyof typeof CloseKind],
    handle: Deno.PointerObject,
  ): Promise<void> {
    if (this.#toClose.length === 0) queueMicrotask(() => this.#closeBatch());
    this.#toClose.push(
      BigInt(kind),
      Deno.UnsafePointer.value(handle) as bigint,
    );
    return new Promise((resolve) => this.#closeWaiters.push(resolve));
  }

  #closeBatch(): void {
    const items = new BigUint64Array(this.#toClose);
    const waiters = this.#closeWaiters;
    this.#toClose = [];
    this.#closeWaiters = [];
    // Batches run one after another, so a connection closes after its streams.
    this.#closing = this.#closing.then(async () => {
      await this.lib.stoq_close_batch(
        this.rt,
        new Uint8Array(items.buffer),
        items.length / 2,
      );
      for (const resolve of waiters) resolve();
    });
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
   * Queues a send of `bytes` (copied by the shim when the batch is submitted) with `flags`
   * (`SendFlags` for streams).
   */
  submitBytes(
    op: typeof Op.STREAM_SEND | typeof Op.DGRAM_SEND,
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
    let batches = 0;
    while (this.#refs > 0) {
      const n = lib.stoq_rt_poll(rt, events.buffer, EVENT_BATCH);
      if (n === 0) {
        this.flush();
        batches = 0;
        const r = await lib.stoq_rt_wait(rt, -1);
        if (r < 0) {
          throw new StoqError("NATIVE_ERROR", `stoq_rt_wait failed with ${r}`);
        }
        continue;
      }
      for (let i = 0; i < n; i++) {
        const sink = this.#sinks.get(events.field(i, 0));
        if (sink) sink(events, i);
      }
      this.flush();
      // Let the microtasks this batch queued (stream readers, write continuations) run.
      if (++batches % BATCHES_PER_YIELD === 0) {
        await yieldTask();
      } else {
        await null;
      }
    }
    this.#pump = undefined;
    this.#resolveIdle();
  }
}
