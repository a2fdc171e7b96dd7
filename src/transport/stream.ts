/**
 * QUIC streams as Web Streams: a `ReadableStream` fed straight from msquic's receive buffers
 * (one copy, into JS memory) and a `WritableStream` whose chunks the shim copies once and holds
 * until acknowledged.
 *
 * @module
 */

import {
  CloseKind,
  Ev,
  Events,
  Op,
  type Records,
  SendFlags,
  Status,
  StreamShutdown,
} from "../../ffi/mod.ts";
import { StoqError } from "../errors.ts";
import type { Runtime } from "./runtime.ts";
import { statusError } from "./status.ts";

/**
 * The receiving half of a stream. Cancel with a number to send STOP_SENDING with that code.
 *
 * @example Reading a stream to its end
 * ```ts
 * import type { StoqReceiveStream } from "../../mod.ts";
 * async function count(readable: StoqReceiveStream): Promise<number> {
 *   let n = 0;
 *   for await (const chunk of readable) n += chunk.byteLength;
 *   return n;
 * }
 * console.log(typeof count);
 * ```
 */
export interface StoqReceiveStream
  extends ReadableStream<Uint8Array<ArrayBuffer>> {
  /** 62-bit QUIC stream ID. */
  readonly id: bigint;
  /** Whether the peer opened this stream with 0-RTT early data (a resumed client). */
  readonly earlyData: boolean;
}

/**
 * The sending half of a stream. Abort with a number to send RESET_STREAM with that code.
 *
 * @example Writing and finishing
 * ```ts
 * import type { StoqSendStream } from "../../mod.ts";
 * async function send(writable: StoqSendStream, data: Uint8Array): Promise<void> {
 *   const w = writable.getWriter();
 *   await w.write(data);
 *   await w.close(); // FIN
 * }
 * console.log(typeof send);
 * ```
 */
export interface StoqSendStream extends WritableStream<Uint8Array> {
  /** 62-bit QUIC stream ID. */
  readonly id: bigint;
}

/**
 * A bidirectional stream, shaped like `Deno.QuicBidirectionalStream`.
 *
 * @example Echoing a stream
 * ```ts
 * import type { StoqBidirectionalStream } from "../../mod.ts";
 * const echo = ({ readable, writable }: StoqBidirectionalStream) => readable.pipeTo(writable);
 * console.log(typeof echo);
 * ```
 */
export interface StoqBidirectionalStream {
  /** Bytes from the peer. */
  readonly readable: StoqReceiveStream;
  /** Bytes to the peer. */
  readonly writable: StoqSendStream;
}

/** What a stream needs from its connection. */
export interface StreamOwner {
  readonly runtime: Runtime;
  /** The error that ended the connection, once it has ended. */
  failure(): StoqError;
  /** Called once the native stream is closed. */
  streamClosed(stream: StreamCore): void;
}

// Writes resolve at once while fewer bytes than this are unacknowledged (or msquic's ideal
// send buffer, if larger): enough to keep loopback and LAN paths full without send buffering.
const MIN_SEND_WINDOW = 16 * 1024 * 1024;
// The readable queues this many bytes before holding msquic's buffers (and so flow control).
const READ_HIGH_WATER = 1024 * 1024;

function appCode(reason: unknown): bigint {
  if (typeof reason === "bigint" && reason >= 0n && reason < 2n ** 62n) {
    return reason;
  }
  if (typeof reason === "number" && Number.isInteger(reason) && reason >= 0) {
    return BigInt(reason);
  }
  if (reason instanceof StoqError && reason.appCode !== undefined) {
    return reason.appCode;
  }
  return 0n;
}

/** How a stream came to be. */
export interface StreamKind {
  send: boolean;
  receive: boolean;
  /** Opened here (it starts, and waits for the peer's stream credit). */
  local: boolean;
  /** Sends may travel as 0-RTT early data. */
  zeroRtt?: boolean;
  /** The peer opened it with 0-RTT early data. */
  earlyData?: boolean;
}

/** Per-stream state machine. Internal: users see the Web Streams. */
export class StreamCore {
  readonly id: number;
  readonly ptr: Deno.PointerObject;
  readonly readable?: StoqReceiveStream;
  readonly writable?: StoqSendStream;
  readonly #owner: StreamOwner;
  readonly #rt: Runtime;
  #quicId = -1n;
  #closed = false;
  #started: PromiseWithResolvers<void> | undefined;
  readonly #sendFlags: number;

  // receive side
  #controller?: ReadableStreamDefaultController<Uint8Array<ArrayBuffer>>;
  // msquic's buffers indicated but not yet completed, as ptr, len pairs (multi-receive mode:
  // msquic keeps indicating while earlier buffers are held).
  #recvBuffers: number[] = [];
  #recvHeld = 0;
  #fin = false;
  #readDone = false;
  #delivering = false;

  // send side
  #outstanding = 0;
  #window = MIN_SEND_WINDOW;
  #writeWaiters: PromiseWithResolvers<void>[] = [];
  #refusedWrites: PromiseWithResolvers<void>[] = [];
  #sendError: StoqError | undefined;
  #closeWaiter: PromiseWithResolvers<void> | undefined;
  #sendDone = false;

  constructor(
    owner: StreamOwner,
    ptr: Deno.PointerObject,
    id: number,
    opts: StreamKind,
  ) {
    this.#owner = owner;
    this.#rt = owner.runtime;
    this.ptr = ptr;
    this.id = id;
    this.#sendFlags = opts.zeroRtt ? SendFlags.ZERO_RTT : 0;
    if (opts.local) {
      this.#started = Promise.withResolvers<void>();
      // Rejected when the stream dies before anyone awaits it (an aborted open).
      this.#started.promise.catch(() => {});
    }
    const idGetter = { get: () => this.quicId, enumerable: true };
    if (opts.receive) {
      const readable = new ReadableStream<Uint8Array<ArrayBuffer>>({
        start: (c) => {
          this.#controller = c;
        },
        pull: () => this.#deliver(false),
        cancel: (reason) => this.#cancelReceive(reason),
      }, { highWaterMark: READ_HIGH_WATER, size: (chunk) => chunk.byteLength });
      Object.defineProperty(readable, "id", idGetter);
      Object.defineProperty(readable, "earlyData", {
        value: opts.earlyData === true,
        enumerable: true,
      });
      this.readable = readable as StoqReceiveStream;
    } else {
      this.#readDone = true;
    }
    if (opts.send) {
      const writable = new WritableStream<Uint8Array>({
        write: (chunk) => this.#write(chunk),
        close: () => this.#closeSend(),
        abort: (reason) => this.#abortSend(reason),
      });
      Object.defineProperty(writable, "id", idGetter);
      this.writable = writable as StoqSendStream;
    } else {
      this.#sendDone = true;
    }
    this.#rt.register(id, (ev, i) => this.#onEvent(ev, i));
  }

  /** The QUIC stream ID (read from msquic once known). */
  get quicId(): bigint {
    if (this.#quicId < 0n && !this.#closed) {
      const v = this.#rt.lib.stoq_stream_quic_id(this.ptr);
      if (BigInt(v) !== 0xffff_ffff_ffff_ffffn) this.#quicId = BigInt(v);
    }
    return this.#quicId;
  }

  /**
   * Resolves when a locally opened stream is within the peer's stream credit; rejects with
   * `STREAM_LIMIT` (when not waiting), or with `ABORTED` when `signal` fires first.
   */
  started(signal?: AbortSignal): Promise<void> {
    const pending = this.#started;
    if (!pending) return Promise.resolve();
    if (!signal) return pending.promise;
    const onAbort = () => this.#abortStart(signal);
    signal.addEventListener("abort", onAbort, { once: true });
    return pending.promise.finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  }

  #abortStart(signal: AbortSignal): void {
    const pending = this.#started;
    if (!pending) return;
    this.#started = undefined;
    pending.reject(
      new StoqError(
        "ABORTED",
        "Gave up opening a stream: the signal was aborted",
        {
          cause: signal.reason,
        },
      ),
    );
    // Nobody will use this stream: abort both directions; SHUTDOWN_COMPLETE frees it.
    if (!this.#closed) {
      this.#rt.submit(
        Op.STREAM_SHUTDOWN,
        this.ptr,
        BigInt(StreamShutdown.ABORT | StreamShutdown.IMMEDIATE),
        0n,
      );
    }
  }

  #onEvent(ev: Records, i: number): void {
    switch (ev.type(i)) {
      case Ev.STREAM_START_COMPLETE: {
        const status = Events.StartComplete.status(ev, i);
        if (status === 0) {
          this.#quicId = Events.StartComplete.quicId(ev, i);
          // Beyond the peer's stream limit msquic starts the stream anyway and says so here;
          // PEER_ACCEPTED follows once the peer grants credit.
          if (Events.StartComplete.peerAccepted(ev, i)) this.#accepted();
        } else {
          this.#started?.reject(statusError(status, "open a stream"));
          this.#started = undefined;
        }
        break;
      }
      case Ev.STREAM_PEER_ACCEPTED:
        this.#accepted();
        break;
      case Ev.STREAM_RECV: {
        const len = Events.Recv.length(ev, i);
        if (len > 0) {
          this.#recvBuffers.push(Events.Recv.data(ev, i), len);
          this.#recvHeld += len;
        }
        // The FIN flag rides on an indication's last record.
        if (Events.Recv.lastOfIndication(ev, i) && Events.Recv.fin(ev, i)) {
          this.#fin = true;
        }
        this.#deliver(false);
        break;
      }
      case Ev.STREAM_SEND_COMPLETE:
        this.#outstanding -= Events.SendComplete.bytes(ev, i);
        this.#wakeWriters();
        break;
      case Ev.STREAM_PEER_SEND_SHUTDOWN:
        // msquic raises this only once every byte up to the FIN was indicated and completed
        // (QuicStreamReceiveComplete). When the FIN arrived after the last data indication, no
        // RECV record carries the FIN flag: this event is then the only end-of-stream signal.
        this.#fin = true;
        this.#deliver(false);
        break;
      case Ev.STREAM_PEER_SEND_ABORTED: {
        const code = Events.PeerCode.appCode(ev, i);
        this.#failRead(
          new StoqError(
            "PEER_RESET",
            `The peer reset the stream with code ${code}`,
            {
              appCode: code,
            },
          ),
        );
        break;
      }
      case Ev.STREAM_PEER_RECV_ABORTED: {
        const code = Events.PeerCode.appCode(ev, i);
        this.#failSend(
          new StoqError(
            "PEER_STOPPED",
            `The peer stopped reading with code ${code}`,
            {
              appCode: code,
            },
          ),
        );
        // Answer STOP_SENDING with RESET_STREAM so the stream can finish.
        this.#rt.submit(
          Op.STREAM_SHUTDOWN,
          this.ptr,
          BigInt(StreamShutdown.ABORT_SEND),
          code,
        );
        break;
      }
      case Ev.STREAM_SEND_SHUTDOWN_COMPLETE: {
        this.#sendDone = true;
        if (Events.SendShutdownComplete.graceful(ev, i)) {
          this.#closeWaiter?.resolve();
        } else {
          this.#failSend(this.#sendError ?? this.#owner.failure());
        }
        break;
      }
      case Ev.STREAM_IDEAL_SEND_BUFFER:
        this.#window = Math.max(
          MIN_SEND_WINDOW,
          Events.IdealSendBuffer.bytes(ev, i),
        );
        this.#wakeWriters();
        break;
      case Ev.STREAM_SHUTDOWN_COMPLETE:
        this.finish(Events.StreamShutdownComplete.connectionShutdown(ev, i));
        break;
    }
  }

  #accepted(): void {
    this.#started?.resolve();
    this.#started = undefined;
  }

  // ---- receive ----

  #deliver(force: boolean): void {
    const c = this.#controller;
    // enqueue() may call pull() re-entrantly; the outer call finishes the job.
    if (this.#readDone || !c || this.#delivering) return;
    if (this.#recvHeld > 0 && (force || (c.desiredSize ?? 0) > 0)) {
      // Everything held becomes one chunk: one allocation, one enqueue, one completion.
      const bufs = this.#recvBuffers;
      const chunk = new Uint8Array(this.#recvHeld);
      for (let k = 0, off = 0; k < bufs.length; off += bufs[k + 1], k += 2) {
        Deno.UnsafePointerView.copyInto(
          Deno.UnsafePointer.create(BigInt(bufs[k]))!,
          bufs.length === 2 ? chunk : chunk.subarray(off, off + bufs[k + 1]),
        );
      }
      this.#releaseHeld();
      this.#delivering = true;
      c.enqueue(chunk);
      this.#delivering = false;
    }
    if (this.#fin && this.#recvHeld === 0 && !this.#readDone) {
      this.#readDone = true;
      c.close();
    }
  }

  /** Gives msquic its receive buffers back (the data was copied or is being discarded). */
  #releaseHeld(): void {
    const total = this.#recvHeld;
    if (total === 0) return;
    this.#recvBuffers = [];
    this.#recvHeld = 0;
    if (!this.#closed) {
      this.#rt.submit(Op.STREAM_RECV_COMPLETE, this.ptr, BigInt(total), 0n);
    }
  }

  #failRead(err: StoqError): void {
    if (this.#readDone) return;
    this.#readDone = true;
    this.#releaseHeld();
    this.#controller?.error(err);
  }

  #cancelReceive(reason: unknown): void {
    if (this.#readDone) return;
    this.#readDone = true;
    this.#releaseHeld();
    if (!this.#closed) {
      this.#rt.submit(
        Op.STREAM_SHUTDOWN,
        this.ptr,
        BigInt(StreamShutdown.ABORT_RECEIVE),
        appCode(reason),
      );
    }
  }

  // ---- send ----

  #write(chunk: Uint8Array): Promise<void> | void {
    if (!(chunk instanceof Uint8Array)) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot write to the stream as the chunk must be a Uint8Array: current value is ${typeof chunk}`,
      );
    }
    if (this.#sendError) throw this.#sendError;
    if (this.#closed || this.#sendDone) throw this.#owner.failure();
    const len = chunk.byteLength;
    if (len === 0) return;
    this.#outstanding += len;
    const done = Promise.withResolvers<void>();
    this.#rt.submitBytes(
      Op.STREAM_SEND,
      this.ptr,
      chunk,
      this.#sendFlags,
      (status) => {
        if (status !== 0) {
          this.#outstanding -= len;
          if (!this.#sendError && !this.#closed && status === Status.ABORTED) {
            // msquic refuses sends as soon as the peer's STOP_SENDING (or close) is processed on
            // its thread, before that event reaches us: reject with the reason once it does.
            this.#refusedWrites.push(done);
          } else {
            done.reject(this.#sendError ?? this.#owner.failure());
          }
        } else if (this.#outstanding < this.#window || this.#sendError) {
          done.resolve();
        } else {
          this.#writeWaiters.push(done);
          // Completions reach JS lazily; ask for a wake-up once half the window has drained, so
          // a blocked writer costs one wake-up per half window rather than one per completion.
          if (!this.#closed) {
            this.#rt.lib.stoq_stream_wake_below(
              this.ptr,
              BigInt(Math.floor(this.#window / 2)),
            );
          }
        }
      },
    );
    return done.promise;
  }

  #wakeWriters(): void {
    while (this.#writeWaiters.length > 0 && this.#outstanding < this.#window) {
      this.#writeWaiters.shift()!.resolve();
    }
  }

  #closeSend(): Promise<void> {
    if (this.#sendError) return Promise.reject(this.#sendError);
    if (this.#closed || this.#sendDone) {
      return Promise.reject(this.#owner.failure());
    }
    this.#closeWaiter = Promise.withResolvers<void>();
    this.#rt.submit(
      Op.STREAM_SHUTDOWN,
      this.ptr,
      BigInt(StreamShutdown.GRACEFUL),
      0n,
    );
    return this.#closeWaiter.promise;
  }

  #abortSend(reason: unknown): void {
    const code = appCode(reason);
    this.#failSend(
      new StoqError(
        "CLOSED",
        `The stream was aborted locally with code ${code}`,
      ),
    );
    if (!this.#closed && !this.#sendDone) {
      this.#rt.submit(
        Op.STREAM_SHUTDOWN,
        this.ptr,
        BigInt(StreamShutdown.ABORT_SEND),
        code,
      );
    }
  }

  #failSend(err: StoqError): void {
    this.#sendError ??= err;
    for (const w of this.#writeWaiters) w.reject(this.#sendError);
    this.#writeWaiters = [];
    for (const w of this.#refusedWrites) w.reject(this.#sendError);
    this.#refusedWrites = [];
    this.#closeWaiter?.reject(this.#sendError);
    this.#closeWaiter = undefined;
  }

  // ---- end ----

  /** Frees the native stream. Called on SHUTDOWN_COMPLETE, after which msquic sends nothing. */
  finish(connectionShutdown: boolean): void {
    if (this.#closed) return;
    // Data msquic already handed over is not lost: copy it out before its buffers go away.
    this.#deliver(true);
    const err = connectionShutdown ? this.#owner.failure() : new StoqError(
      "PEER_RESET",
      "The stream was shut down before it finished",
    );
    this.#started?.reject(err);
    this.#started = undefined;
    this.#failRead(err);
    if (
      !this.#sendDone || this.#writeWaiters.length > 0 ||
      this.#refusedWrites.length > 0 ||
      this.#closeWaiter
    ) {
      this.#failSend(err);
    }
    this.#closed = true;
    this.#rt.unregister(this.id);
    // Operations queued for this handle (the RECV_COMPLETE just above, a shutdown) must reach
    // the shim before the handle is freed, or they would run on freed memory.
    this.#rt.flush();
    this.#rt.closeHandle(CloseKind.STREAM, this.ptr);
    this.#owner.streamClosed(this);
  }
}
