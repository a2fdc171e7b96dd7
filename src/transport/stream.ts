/**
 * QUIC streams as Web Streams.
 *
 * Receiving: msquic's receive buffers stay msquic's (and count against the flow-control
 * window) until a reader asks for data. The `ReadableStream` copies them once into the chunk it
 * hands out; {@linkcode StoqReceiveStream.getInPlaceReader} lends them without copying;
 * {@linkcode StoqReceiveStream.receiveToFile} has the shim write them to a file.
 *
 * Sending: the `WritableStream` copies each chunk once into the shim's send pool, which msquic
 * sends from until the peer acknowledges it; a chunk filled in place through
 * {@linkcode StoqSendStream.getWriteBuffer} is sent without any copy.
 *
 * @module
 */

import {
  CloseKind,
  Ev,
  Events,
  Op,
  Pool,
  type Records,
  SendFlags,
  Status,
  StreamShutdown,
} from "../../ffi/mod.ts";
import { StoqError } from "../errors.ts";
import type { Runtime } from "./runtime.ts";
import { statusError } from "./status.ts";

/**
 * Options for {@linkcode StoqReceiveStream.receiveToFile} and
 * {@linkcode StoqConnection.sendFile}.
 *
 * @example Reporting progress
 * ```ts
 * import type { StoqFileOptions } from "../../mod.ts";
 * const options: StoqFileOptions = {
 *   onProgress: (bytes) => console.log(`${bytes} bytes so far`),
 *   progressInterval: 8 * 1024 * 1024,
 * };
 * console.log(options.progressInterval);
 * ```
 */
export interface StoqFileOptions {
  /**
   * Called with the bytes moved so far, every `progressInterval` bytes (acknowledged by the
   * peer when sending, written to the file when receiving).
   * @default {undefined}
   */
  onProgress?: (bytes: number) => void;
  /**
   * Bytes between two `onProgress` calls.
   * @default {1048576}
   */
  progressInterval?: number;
  /**
   * Stops the transfer: the stream is reset (sending) or stopped (receiving) and the promise
   * rejects with `ABORTED`.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * What a finished file transfer moved.
 *
 * @example Reading the result
 * ```ts
 * import type { StoqFileResult } from "../../mod.ts";
 * const result: StoqFileResult = { bytes: 1024 };
 * console.log(result.bytes);
 * ```
 */
export interface StoqFileResult {
  /** Bytes moved: all of them acknowledged by the peer, or all of them written. */
  bytes: number;
}

/**
 * Received bytes lent in place: views of msquic's own receive buffers, valid until
 * {@linkcode StoqReceiveLoan.release}. Releasing detaches every view (reading one afterwards
 * sees an empty buffer, never freed memory) and returns the buffers to msquic, which grants
 * the peer flow-control credit for them. Loans may be released in any order, but msquic takes
 * bytes back in stream order: a loan's bytes count against the peer's flow-control window until
 * every earlier loan is back too, so waiting for more data while holding loans that cover the
 * window stalls the stream.
 *
 * @example Hashing without a copy
 * ```ts
 * import type { StoqReceiveLoan } from "../../mod.ts";
 * import { createHash } from "node:crypto";
 * function consume(loan: StoqReceiveLoan, hash: ReturnType<typeof createHash>): void {
 *   using held = loan;
 *   for (const chunk of held.chunks) hash.update(chunk);
 * }
 * console.log(typeof consume);
 * ```
 */
export interface StoqReceiveLoan extends Disposable {
  /** The bytes, in order, as views of msquic's buffers. */
  readonly chunks: readonly Uint8Array<ArrayBuffer>[];
  /** Total bytes in {@linkcode chunks}. */
  readonly byteLength: number;
  /** Returns the buffers to msquic and detaches the views. Idempotent. */
  release(): void;
}

/**
 * Reads a stream without copying (see {@linkcode StoqReceiveStream.getInPlaceReader}).
 *
 * @example Reading to the end in place
 * ```ts
 * import type { StoqInPlaceReader } from "../../mod.ts";
 * async function count(reader: StoqInPlaceReader): Promise<number> {
 *   let n = 0;
 *   for (let loan; (loan = await reader.read()) !== null;) {
 *     n += loan.byteLength;
 *     loan.release();
 *   }
 *   return n;
 * }
 * console.log(typeof count);
 * ```
 */
export interface StoqInPlaceReader {
  /**
   * Everything received and not yet lent, as one loan; `null` once the peer finished and every
   * byte was lent. Rejects like a `ReadableStream` read when the stream fails.
   */
  read(): Promise<StoqReceiveLoan | null>;
  /** Resolves when the stream ended; rejects with its error. */
  readonly closed: Promise<void>;
  /** Stops reading: STOP_SENDING with `reason` when it is a number (see the readable). */
  cancel(reason?: unknown): Promise<void>;
  /** Unlocks the readable. Loans out stay valid until released. */
  releaseLock(): void;
}

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
  /**
   * Locks the stream and reads it without copying: each read lends msquic's receive buffers
   * until the loan is released. Data stays in msquic's buffers (holding the peer's flow
   * control) while a loan is out.
   *
   * @throws {TypeError} When the stream is locked.
   */
  getInPlaceReader(): StoqInPlaceReader;
  /**
   * Writes what the peer sends from now on to the file at `path` (created or truncated) inside
   * the shim, with io_uring: the bytes never enter JS. Resolves once the peer finished the
   * stream and every byte is written. Needs write permission for `path`.
   *
   * @throws {StoqError} `FILE_ERROR` when the file cannot be opened or written (a full disk:
   *   the peer is told to stop sending), `PERMISSION_DENIED` without write permission,
   *   `ABORTED` when the signal fires, the stream's error when it fails (`PEER_RESET` when the
   *   peer resets its side); `INVALID_ARGUMENT` when the stream is locked; `CLOSED` when the
   *   readable was cancelled. It rejects only once the file is closed.
   */
  receiveToFile(
    path: string | URL,
    options?: StoqFileOptions,
  ): Promise<StoqFileResult>;
}

/**
 * Pool memory to fill and send without a copy: {@linkcode StoqSendStream.getWriteBuffer}.
 *
 * @example Filling and committing
 * ```ts
 * import type { StoqWriteBuffer } from "../../mod.ts";
 * async function send(buffer: StoqWriteBuffer, text: string): Promise<void> {
 *   const { written } = new TextEncoder().encodeInto(text, buffer.bytes);
 *   await buffer.commit(written);
 * }
 * console.log(typeof send);
 * ```
 */
export interface StoqWriteBuffer extends Disposable {
  /** The buffer (65,536 bytes of the shim's send pool); detached once committed. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /**
   * Sends `bytes.subarray(0, length)` as the stream's next write, without copying: msquic
   * sends from this memory. Resolves like `writer.write()`. Writing `bytes` (or a subarray of
   * it) through a writer does the same.
   *
   * @throws {StoqError} `INVALID_ARGUMENT` when already committed or `length` is out of range,
   *   or when the writable is locked by something other than a writer from `getWriter()`;
   *   the writable's error when it errored (aborted, or its stream failed): the buffer then
   *   goes back to the pool and `bytes` is detached.
   */
  commit(length?: number): Promise<void>;
  /** Gives the buffer back unsent (nothing happens once committed). */
  [Symbol.dispose](): void;
}

/**
 * Where a stream's sending waited, in milliseconds since it opened (msquic's own accounting):
 * what limited a transfer.
 *
 * @example Finding the bottleneck
 * ```ts
 * import type { StoqSendStreamStats } from "../../mod.ts";
 * const worst = (s: StoqSendStreamStats) =>
 *   Object.entries(s).sort(([, a], [, b]) => b - a)[0][0];
 * console.log(worst({
 *   blockedBySchedulingMs: 0, blockedByPacingMs: 3, blockedByAmplificationMs: 0,
 *   blockedByCongestionControlMs: 10, blockedByConnectionFlowControlMs: 0,
 *   blockedByStreamIdsMs: 0, blockedByStreamFlowControlMs: 1, blockedByApplicationMs: 40,
 * })); // blockedByApplicationMs
 * ```
 */
export interface StoqSendStreamStats {
  /** The connection was busy sending other streams. */
  blockedBySchedulingMs: number;
  /** Pacing spread the sends over the round trip. */
  blockedByPacingMs: number;
  /** Anti-amplification (a server before the client's address is validated). */
  blockedByAmplificationMs: number;
  /** The congestion window was full. */
  blockedByCongestionControlMs: number;
  /** The peer's connection-wide flow-control window was full. */
  blockedByConnectionFlowControlMs: number;
  /** The stream waited for the peer's stream credit. */
  blockedByStreamIdsMs: number;
  /** The peer's window for this stream was full (its reader fell behind). */
  blockedByStreamFlowControlMs: number;
  /** Nothing to send: the application had written everything (or the write path lagged). */
  blockedByApplicationMs: number;
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
  /**
   * A 64 KiB buffer of the shim's send pool to fill in place and commit: the one write path
   * with no copy at all. Waits while every pool buffer is in flight.
   */
  getWriteBuffer(): Promise<StoqWriteBuffer>;
  /**
   * Where this stream's sending has waited so far, by cause (the final figures once the stream
   * has closed).
   */
  stats(): StoqSendStreamStats;
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
  /** Starts a connection whose start waits for its first stream operations (0-RTT). */
  requestStart(): void;
  /** The error that ended the connection, once it has ended. */
  failure(): StoqError;
  /** Called once the native stream is closed. */
  streamClosed(stream: StreamCore): void;
}

// Writes resolve at once while fewer bytes than this are unacknowledged (or msquic's ideal
// send buffer, if larger): enough to keep loopback and LAN paths full without send buffering.
const MIN_SEND_WINDOW = 16 * 1024 * 1024;
// Writes below this go to a buffer the shim copies them into rather than a 64 KiB pool slot.
const COPY_BELOW = 4096;
const DEFAULT_PROGRESS = 1024 * 1024;

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

/** Detaches an ArrayBuffer so that no view of it can reach the memory behind it. */
function detach(buffer: ArrayBuffer): void {
  if (!buffer.detached) buffer.transfer(0);
}

/** A pool slot lent to JS by getWriteBuffer(), keyed by the ArrayBuffer over it. */
interface LentSlot {
  slot: number;
  runtime: Runtime;
}
const lentSlots = new WeakMap<ArrayBuffer, LentSlot>();
// A buffer dropped without commit or dispose gives its slot back when collected.
const lentRegistry = new FinalizationRegistry<LentSlot>((lent) =>
  lent.runtime.pool.release(lent.slot)
);

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

/** One loan of received buffers: how many bytes, and whether it came back. */
interface LoanEntry {
  bytes: number;
  buffers: ArrayBuffer[];
  released: boolean;
}

/** A file transfer on this stream (see file.c). */
interface FileTransfer {
  done: PromiseWithResolvers<StoqFileResult>;
  onProgress?: (bytes: number) => void;
  path: string;
  bytes: number;
  sending: boolean;
  finished: boolean;
  aborted?: AbortSignal;
  /** The shim's FILE_DONE came with the stream's failure, before JS knew that failure. */
  ended?: boolean;
}

type ReadMode = "stream" | "in-place" | "file";

/** Per-stream state machine. Internal: users see the Web Streams. */
export class StreamCore {
  readonly id: number;
  readonly ptr: Deno.PointerObject;
  readonly readable?: StoqReceiveStream;
  readonly writable?: StoqSendStream;
  readonly #owner: StreamOwner;
  readonly #rt: Runtime;
  readonly #handle: number;
  #quicId = -1n;
  #closed = false;
  #started: PromiseWithResolvers<void> | undefined;
  readonly #sendFlags: number;
  // A peer's stream keeps its native handle (and so its stream credit) until the application
  // accepted it, even when it ends before that.
  #accepted: boolean;
  #finishPending: boolean | undefined;

  // receive side
  #controller?: ReadableStreamDefaultController<Uint8Array<ArrayBuffer>>;
  #mode: ReadMode = "stream";
  // msquic's buffers indicated and neither completed nor lent, as [address, length, offset]
  // triples (multi-receive mode: msquic keeps indicating while earlier buffers are held).
  #recvBuffers: number[] = [];
  #recvHeld = 0;
  // Stream offset up to which JS completed bytes (or handed them to a file).
  #recvCompleted = 0;
  #fin = false;
  #readDone = false;
  #readWanted = false;
  #delivering = false;
  #loans: LoanEntry[] = [];
  #inPlaceRead: PromiseWithResolvers<StoqReceiveLoan | null> | undefined;
  #inPlaceLock:
    | ReadableStreamDefaultReader<Uint8Array<ArrayBuffer>>
    | undefined;
  #readError: StoqError | undefined;
  #file: FileTransfer | undefined;

  // send side
  #outstanding = 0;
  #window = MIN_SEND_WINDOW;
  #writeWaiters: PromiseWithResolvers<void>[] = [];
  #refusedWrites: PromiseWithResolvers<void>[] = [];
  #sendError: StoqError | undefined;
  #closeWaiter: PromiseWithResolvers<void> | undefined;
  #sendDone = false;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  // Waits for send pool slots (getWriteBuffer, writes), each cancelled by calling it.
  #slotWaits = new Set<() => void>();
  #finalStats: StoqSendStreamStats | undefined;

  constructor(
    owner: StreamOwner,
    ptr: Deno.PointerObject,
    id: number,
    opts: StreamKind,
  ) {
    this.#owner = owner;
    this.#rt = owner.runtime;
    this.ptr = ptr;
    this.#handle = Number(Deno.UnsafePointer.value(ptr));
    this.id = id;
    this.#accepted = opts.local;
    this.#sendFlags = opts.zeroRtt ? SendFlags.ZERO_RTT : 0;
    if (opts.local) {
      this.#started = Promise.withResolvers<void>();
      // Rejected when the stream dies before anyone awaits it (an aborted open).
      this.#started.promise.catch(() => {});
    }
    const idGetter = { get: () => this.quicId, enumerable: true };
    if (opts.receive) {
      // highWaterMark 0: data is copied out only for a pending read, so unread data stays in
      // msquic's buffers and the peer's flow control bounds it.
      const readable = new ReadableStream<Uint8Array<ArrayBuffer>>({
        start: (c) => {
          this.#controller = c;
        },
        pull: () => {
          this.#readWanted = true;
          this.#deliver(false);
        },
        cancel: (reason) => this.#cancelReceive(reason),
      }, { highWaterMark: 0 });
      Object.defineProperties(readable, {
        id: idGetter,
        earlyData: { value: opts.earlyData === true, enumerable: true },
        getInPlaceReader: { value: () => this.#getInPlaceReader() },
        receiveToFile: {
          value: (path: string | URL, options?: StoqFileOptions) =>
            this.#receiveToFile(path, options),
        },
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
      const getWriter = writable.getWriter.bind(writable);
      Object.defineProperties(writable, {
        id: idGetter,
        getWriteBuffer: { value: () => this.#getWriteBuffer() },
        stats: { value: () => this.#sendStats() },
        // The writer getWriteBuffer()'s commit() writes through while the writable is locked.
        getWriter: {
          value: () => {
            const w = getWriter();
            this.#writer = w;
            return w;
          },
        },
      });
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

  /**
   * The application took this peer stream from the connection's incoming queue. A stream that
   * already ended frees its native handle now (returning its credit to the peer).
   */
  accept(): void {
    if (this.#accepted) return;
    this.#accepted = true;
    if (this.#finishPending !== undefined) this.finish(this.#finishPending);
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
          if (Events.StartComplete.peerAccepted(ev, i)) this.#peerAccepted();
        } else {
          this.#started?.reject(statusError(status, "open a stream"));
          this.#started = undefined;
        }
        break;
      }
      case Ev.STREAM_PEER_ACCEPTED:
        this.#peerAccepted();
        break;
      case Ev.STREAM_RECV: {
        const len = Events.Recv.length(ev, i);
        if (len > 0) {
          const data = Events.Recv.data(ev, i);
          const offset = Events.Recv.offset(ev, i);
          if (this.#mode === "file") {
            // Indicated before the shim took the stream over: the shim writes it too.
            this.#rt.submitNumbers(
              Op.STREAM_FILE_WRITE,
              this.#handle,
              data,
              len,
              offset,
              0,
            );
          } else {
            this.#recvBuffers.push(data, len, offset);
            this.#recvHeld += len;
          }
        }
        // The FIN flag rides on an indication's last record.
        if (Events.Recv.lastOfIndication(ev, i) && Events.Recv.fin(ev, i)) {
          this.#fin = true;
        }
        this.#deliver(false);
        break;
      }
      case Ev.STREAM_SEND_COMPLETE: {
        const slot = Events.SendComplete.slot(ev, i);
        if (slot > 0) this.#rt.pool.release(slot - 1);
        this.#outstanding -= Events.SendComplete.bytes(ev, i);
        this.#wakeWriters();
        break;
      }
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
          this.#closeWaiter = undefined;
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
      case Ev.FILE_PROGRESS: {
        const file = this.#file;
        if (file && !file.finished) {
          file.bytes = Events.FileProgress.bytes(ev, i);
          try {
            file.onProgress?.(file.bytes);
          } catch { /* a throwing callback must not stop the transfer */ }
        }
        break;
      }
      case Ev.FILE_DONE:
        this.#fileDone(
          Events.FileDone.status(ev, i),
          Events.FileDone.bytes(ev, i),
          Events.FileDone.fileIo(ev, i),
        );
        if (this.#finishPending !== undefined && this.#accepted) {
          this.finish(this.#finishPending);
        }
        break;
      case Ev.STREAM_SHUTDOWN_COMPLETE:
        this.finish(Events.StreamShutdownComplete.connectionShutdown(ev, i));
        break;
    }
  }

  #peerAccepted(): void {
    this.#started?.resolve();
    this.#started = undefined;
  }

  // ---- receive ----

  #deliver(force: boolean): void {
    const c = this.#controller;
    // enqueue() may call pull() re-entrantly; the outer call finishes the job.
    if (this.#readDone || !c || this.#delivering) return;
    if (this.#mode === "in-place") return this.#lend();
    if (
      this.#mode === "stream" && this.#recvHeld > 0 &&
      (force || this.#readWanted)
    ) {
      // Everything held becomes one chunk: one allocation, one enqueue, one completion.
      const bufs = this.#recvBuffers;
      const chunk = new Uint8Array(this.#recvHeld);
      for (let k = 0, off = 0; k < bufs.length; off += bufs[k + 1], k += 3) {
        Deno.UnsafePointerView.copyInto(
          Deno.UnsafePointer.create(BigInt(bufs[k]))!,
          bufs.length === 3 ? chunk : chunk.subarray(off, off + bufs[k + 1]),
        );
      }
      this.#completeHeld();
      this.#readWanted = false;
      this.#delivering = true;
      c.enqueue(chunk);
      this.#delivering = false;
    }
    if (this.#fin && this.#recvHeld === 0 && !this.#readDone) {
      this.#readDone = true;
      c.close();
    }
  }

  /**
   * Gives msquic every held buffer back (copied, or being discarded). Completion counts bytes
   * from the front, so it waits for loans still out ahead of them.
   */
  #completeHeld(): void {
    const total = this.#recvHeld;
    if (total === 0) return;
    this.#recvBuffers = [];
    this.#recvHeld = 0;
    if (this.#loans.length === 0) return this.#complete(total);
    this.#loans.push({ bytes: total, buffers: [], released: true });
  }

  #complete(bytes: number): void {
    this.#recvCompleted += bytes;
    if (!this.#closed) {
      this.#rt.submitNumbers(
        Op.STREAM_RECV_COMPLETE,
        this.#handle,
        bytes,
        0,
        0,
        0,
      );
    }
  }

  #failRead(err: StoqError): void {
    if (this.#readDone) return;
    this.#readDone = true;
    this.#readError = err;
    this.#completeHeld();
    this.#inPlaceRead?.reject(err);
    this.#inPlaceRead = undefined;
    this.#controller?.error(err);
    // A file receiving the stream is settled by the shim's FILE_DONE, once the writes still in
    // flight are done and the file is closed: its own error (a full disk) comes first there.
    if (this.#file?.ended && !this.#file.sending) this.#fileFailed(err);
  }

  #cancelReceive(reason: unknown): void {
    if (this.#readDone) return;
    this.#readDone = true;
    this.#completeHeld();
    if (!this.#closed) {
      this.#rt.submit(
        Op.STREAM_SHUTDOWN,
        this.ptr,
        BigInt(StreamShutdown.ABORT_RECEIVE),
        appCode(reason),
      );
    }
  }

  // ---- receive in place ----

  #getInPlaceReader(): StoqInPlaceReader {
    const readable = this.readable!;
    // Locks the readable (a TypeError when someone else holds it), as getReader() does.
    const lock = readable.getReader();
    this.#inPlaceLock = lock;
    this.#mode = "in-place";
    const reader: StoqInPlaceReader = {
      read: () => {
        if (this.#inPlaceLock !== lock) {
          return Promise.reject(
            new TypeError("Cannot read: the in-place reader was released"),
          );
        }
        if (this.#inPlaceRead) {
          return Promise.reject(
            new StoqError(
              "INVALID_ARGUMENT",
              "Cannot read in place twice at once: await the previous read() first",
            ),
          );
        }
        if (this.#readError) return Promise.reject(this.#readError);
        this.#inPlaceRead = Promise.withResolvers();
        const pending = this.#inPlaceRead.promise;
        this.#lend();
        return pending;
      },
      closed: lock.closed,
      cancel: (reason) => lock.cancel(reason),
      releaseLock: () => {
        if (this.#inPlaceLock !== lock) return;
        this.#inPlaceLock = undefined;
        this.#inPlaceRead?.reject(
          new TypeError("The in-place reader was released"),
        );
        this.#inPlaceRead = undefined;
        this.#mode = "stream";
        lock.releaseLock();
      },
    };
    return reader;
  }

  /** Answers a pending in-place read with everything held, or with the end of the stream. */
  #lend(): void {
    const pending = this.#inPlaceRead;
    if (!pending) return;
    if (this.#recvHeld === 0) {
      if (this.#fin || this.#readDone) {
        this.#inPlaceRead = undefined;
        if (!this.#readDone) {
          this.#readDone = true;
          this.#controller?.close();
        }
        pending.resolve(null);
      }
      return;
    }
    const bufs = this.#recvBuffers;
    const chunks: Uint8Array<ArrayBuffer>[] = [];
    const buffers: ArrayBuffer[] = [];
    for (let k = 0; k < bufs.length; k += 3) {
      const ab = Deno.UnsafePointerView.getArrayBuffer(
        Deno.UnsafePointer.create(BigInt(bufs[k]))!,
        bufs[k + 1],
      );
      buffers.push(ab);
      chunks.push(new Uint8Array(ab));
    }
    const entry: LoanEntry = {
      bytes: this.#recvHeld,
      buffers,
      released: false,
    };
    this.#loans.push(entry);
    this.#recvBuffers = [];
    this.#recvHeld = 0;
    this.#inPlaceRead = undefined;
    const release = () => this.#releaseLoan(entry);
    pending.resolve({
      chunks,
      byteLength: entry.bytes,
      release,
      [Symbol.dispose]: release,
    });
  }

  /** A loan came back: detach its views; complete the loans released from the front. */
  #releaseLoan(entry: LoanEntry): void {
    if (entry.released) return;
    entry.released = true;
    for (const ab of entry.buffers) detach(ab);
    entry.buffers = [];
    let bytes = 0;
    while (this.#loans.length > 0 && this.#loans[0].released) {
      bytes += this.#loans.shift()!.bytes;
    }
    if (bytes > 0) this.#complete(bytes);
  }

  // ---- receive to a file ----

  #receiveToFile(
    path: string | URL,
    options: StoqFileOptions = {},
  ): Promise<StoqFileResult> {
    try {
      const file = checkFile(path, options, "write", "receive to a file");
      const readable = this.readable!;
      if (readable.locked) {
        throw new StoqError(
          "INVALID_ARGUMENT",
          "Cannot receive to a file: the stream is locked (a reader holds it)",
        );
      }
      if (this.#readError) throw this.#readError;
      if (this.#closed && !this.#readDone) throw this.#owner.failure();
      if (this.#readDone && !this.#fin) {
        throw new StoqError(
          "CLOSED",
          "Cannot receive to a file: the readable was cancelled (the peer was told to stop sending); receive from a stream that is still open",
        );
      }
      if (this.#loans.length > 0) {
        throw new StoqError(
          "INVALID_ARGUMENT",
          "Cannot receive to a file while in-place loans are out: release them first",
        );
      }
      const lib = this.#rt.lib;
      const fd = new Int32Array(1);
      const size = new BigUint64Array(1);
      const err = lib.stoq_file_open(
        cstring(file),
        1,
        new Uint8Array(fd.buffer),
        new Uint8Array(size.buffer),
      );
      if (err !== 0) throw fileError(lib, err, `open ${file} for writing`);
      // The readable is ours from now on; it closes at the peer's FIN as usual.
      readable.getReader();
      if (this.#readDone) {
        // The peer already finished and every byte was read: the file is empty.
        lib.stoq_file_close(fd[0]);
        return Promise.resolve({ bytes: 0 });
      }
      const transfer = this.#startFile(file, false, options);
      this.#mode = "file";
      this.#rt.submitNumbers(
        Op.STREAM_RECV_FILE,
        this.#handle,
        fd[0],
        this.#recvCompleted,
        transfer.progress,
        0,
      );
      // Buffers indicated before now are the shim's to write (and complete) too.
      const bufs = this.#recvBuffers;
      for (let k = 0; k < bufs.length; k += 3) {
        this.#rt.submitNumbers(
          Op.STREAM_FILE_WRITE,
          this.#handle,
          bufs[k],
          bufs[k + 1],
          bufs[k + 2],
          0,
        );
      }
      this.#recvBuffers = [];
      this.#recvHeld = 0;
      return transfer.promise;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Sends the file behind `fd` (`size` bytes) on this stream and finishes it: the shim reads
   * it with io_uring and msquic sends it. Resolves once the peer acknowledged every byte and
   * the FIN.
   */
  sendFile(
    fd: number,
    size: number,
    path: string,
    options: StoqFileOptions,
  ): Promise<StoqFileResult> {
    const transfer = this.#startFile(path, true, options);
    this.#closeWaiter = Promise.withResolvers<void>();
    this.#closeWaiter.promise.catch(() => {});
    this.#rt.submitNumbers(
      Op.STREAM_SEND_FILE,
      this.#handle,
      fd,
      size,
      transfer.progress,
      0,
      (status) => {
        if (status !== 0) this.#fileDone(status, 0, false);
      },
    );
    this.#owner.requestStart();
    const acked = this.#closeWaiter.promise;
    return transfer.promise.then(async (result) => {
      await acked; // the FIN, acknowledged
      return result;
    });
  }

  #startFile(
    path: string,
    sending: boolean,
    options: StoqFileOptions,
  ): { promise: Promise<StoqFileResult>; progress: number } {
    const done = Promise.withResolvers<StoqFileResult>();
    const file: FileTransfer = {
      done,
      path,
      bytes: 0,
      sending,
      finished: false,
      onProgress: options.onProgress,
    };
    this.#file = file;
    const signal = options.signal;
    if (signal) {
      const onAbort = () => {
        file.aborted = signal;
        if (this.#closed) return;
        this.#rt.submit(
          Op.STREAM_SHUTDOWN,
          this.ptr,
          BigInt(
            sending ? StreamShutdown.ABORT_SEND : StreamShutdown.ABORT_RECEIVE,
          ),
          0n,
        );
      };
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener("abort", onAbort, { once: true });
        done.promise.finally(() => signal.removeEventListener("abort", onAbort))
          .catch(() => {});
      }
    }
    const progress = options.onProgress
      ? options.progressInterval ?? DEFAULT_PROGRESS
      : 0;
    return { promise: done.promise, progress };
  }

  #fileDone(status: number, bytes: number, fileIo: boolean): void {
    const file = this.#file;
    if (!file || file.finished) return;
    if (status === 0) {
      file.finished = true;
      file.done.resolve({ bytes });
      return;
    }
    const what = `${file.sending ? "send" : "receive"} ${file.path}`;
    if (fileIo) return this.#fileFailed(fileError(this.#rt.lib, status, what));
    // The stream failed: reject with its error, which may still be on its way (the stream's
    // events, or its end, settle the transfer then).
    const known = file.sending ? this.#sendError : this.#readError;
    if (known) return this.#fileFailed(known);
    if (this.#closed) return this.#fileFailed(this.#owner.failure());
    // Aborted by the signal: the shim closed the file; nothing else may ever end the transfer
    // (a receive aborted on a stream whose other direction stays open).
    if (file.aborted) return this.#fileFailed(statusError(status, what));
    // The file is closed; the stream's failure that ended it settles it on arrival.
    file.ended = true;
  }

  #fileFailed(err: StoqError): void {
    const file = this.#file;
    if (!file || file.finished) return;
    file.finished = true;
    file.done.reject(
      file.aborted && err.code !== "ABORTED"
        ? new StoqError(
          "ABORTED",
          `Gave up ${
            file.sending ? "sending" : "receiving"
          } ${file.path}: the signal was aborted`,
          { cause: file.aborted.reason },
        )
        : err,
    );
  }

  // ---- send ----

  #sendStats(): StoqSendStreamStats {
    if (this.#finalStats) return { ...this.#finalStats };
    const out = new BigUint64Array(8);
    const st = this.#rt.lib.stoq_stream_stats(
      this.ptr,
      new Uint8Array(out.buffer),
      8,
    );
    if (st !== 0) throw statusError(st, "read stream stats");
    const ms = (k: number) => Number(out[k]) / 1000;
    return {
      blockedBySchedulingMs: ms(0),
      blockedByPacingMs: ms(1),
      blockedByAmplificationMs: ms(2),
      blockedByCongestionControlMs: ms(3),
      blockedByConnectionFlowControlMs: ms(4),
      blockedByStreamIdsMs: ms(5),
      blockedByStreamFlowControlMs: ms(6),
      blockedByApplicationMs: ms(7),
    };
  }

  #getWriteBuffer(): Promise<StoqWriteBuffer> {
    if (this.#sendError) return Promise.reject(this.#sendError);
    if (this.#closed || this.#sendDone) {
      return Promise.reject(this.#owner.failure());
    }
    const pool = this.#rt.pool;
    const slot = pool.take();
    if (slot === undefined) {
      return new Promise((resolve, reject) =>
        this.#waitSlot((slot) => {
          if (slot === undefined) {
            reject(this.#sendError ?? this.#owner.failure());
          } else resolve(this.#lendSlot(slot));
        })
      );
    }
    return Promise.resolve(this.#lendSlot(slot));
  }

  /**
   * Waits for a send pool slot: `then` gets it (in a later microtask), or `undefined` once the
   * send side failed or the stream closed (a slot that comes after that goes back).
   */
  #waitSlot(then: (slot?: number) => void): void {
    const pool = this.#rt.pool;
    const cancel = () => {
      withdraw();
      queueMicrotask(() => then());
    };
    const withdraw = pool.waitSlot((slot) => {
      this.#slotWaits.delete(cancel);
      queueMicrotask(() => {
        if (this.#sendError || this.#closed) {
          pool.release(slot);
          then();
        } else then(slot);
      });
    });
    this.#slotWaits.add(cancel);
  }

  /** The send side failed or the stream closed: nobody waits for pool slots any more. */
  #cancelSlotWaits(): void {
    const waits = [...this.#slotWaits];
    this.#slotWaits.clear();
    for (const cancel of waits) cancel();
  }

  /** Wraps a pool slot as a write buffer for the application. */
  #lendSlot(slot: number): StoqWriteBuffer {
    const pool = this.#rt.pool;
    const runtime = this.#rt;
    const ab = pool.lend(slot);
    const lent: LentSlot = { slot, runtime };
    lentSlots.set(ab, lent);
    lentRegistry.register(ab, lent, lent);
    const bytes = new Uint8Array(ab);
    const writable = this.writable!;
    const give = () => {
      if (!lentSlots.delete(ab)) return;
      lentRegistry.unregister(lent);
      detach(ab);
      runtime.pool.release(slot);
    };
    return {
      bytes,
      commit: (length = Pool.SLOT_SIZE) => {
        if (!lentSlots.has(ab)) {
          return Promise.reject(
            new StoqError(
              "INVALID_ARGUMENT",
              "Cannot commit the write buffer: it was committed or disposed already",
            ),
          );
        }
        if (
          !Number.isInteger(length) || length < 0 || length > Pool.SLOT_SIZE
        ) {
          return Promise.reject(
            new StoqError(
              "INVALID_ARGUMENT",
              `Cannot commit the write buffer as 'length' must be an integer from 0 to ${Pool.SLOT_SIZE}: current value is ${length}`,
            ),
          );
        }
        const view = bytes.subarray(0, length);
        // A writable that errored (aborted, failed) rejects the write without taking the
        // slot: give it back then (once taken, the stream returns it itself).
        const back = (err: unknown) => {
          give();
          throw err;
        };
        if (!writable.locked) {
          const w = writable.getWriter();
          const written = w.write(view);
          w.releaseLock();
          return written.catch(back);
        }
        const w = this.#writer;
        if (!w) {
          return Promise.reject(
            new StoqError(
              "INVALID_ARGUMENT",
              "Cannot commit the write buffer: the writable is locked by a pipe; write buffer.bytes through it instead",
            ),
          );
        }
        return w.write(view).catch(back);
      },
      [Symbol.dispose]: give,
    };
  }

  #write(chunk: Uint8Array): Promise<void> | void {
    if (!(chunk instanceof Uint8Array)) {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot write to the stream as the chunk must be a Uint8Array: current value is ${typeof chunk}`,
      );
    }
    const lent = lentSlots.get(chunk.buffer as ArrayBuffer);
    if (this.#sendError || this.#closed || this.#sendDone) {
      if (lent) this.#giveBack(chunk.buffer as ArrayBuffer, lent);
      throw this.#sendError ?? this.#owner.failure();
    }
    const len = chunk.byteLength;
    if (len === 0) {
      if (lent) this.#giveBack(chunk.buffer as ArrayBuffer, lent);
      return;
    }
    this.#outstanding += len;
    const done = Promise.withResolvers<void>();
    if (lent && lent.runtime === this.#rt) {
      // Filled in place: msquic sends from the slot itself.
      lentSlots.delete(chunk.buffer as ArrayBuffer);
      lentRegistry.unregister(lent);
      const offset = chunk.byteOffset;
      detach(chunk.buffer as ArrayBuffer);
      this.#sendSlot(lent.slot, offset, len, this.#sentOne(done, 1));
    } else if (len < COPY_BELOW) {
      const sent = this.#sentOne(done, 1);
      this.#rt.submitBytes(
        Op.STREAM_SEND_COPY,
        this.ptr,
        chunk,
        this.#sendFlags,
        (status) => sent(status, len),
      );
    } else {
      this.#copyToPool(chunk, done, len);
    }
    this.#owner.requestStart();
    return done.promise;
  }

  #giveBack(buffer: ArrayBuffer, lent: LentSlot): void {
    lentSlots.delete(buffer);
    lentRegistry.unregister(lent);
    detach(buffer);
    lent.runtime.pool.release(lent.slot);
  }

  /** Copies a chunk into pool slots (waiting for free ones) and sends each. */
  #copyToPool(
    chunk: Uint8Array,
    done: PromiseWithResolvers<void>,
    len: number,
  ) {
    const pool = this.#rt.pool;
    const pieces = Math.ceil(len / Pool.SLOT_SIZE);
    const sent = this.#sentOne(done, pieces);
    let off = 0;
    const next = (given?: number): void => {
      while (off < len) {
        if (this.#sendError || this.#closed) {
          if (given !== undefined) pool.release(given);
          // The rest never goes out: account for it as sent-and-failed.
          while (off < len) {
            const n = Math.min(Pool.SLOT_SIZE, len - off);
            off += n;
            sent(Status.ABORTED, n);
          }
          return;
        }
        const slot = given ?? pool.take();
        given = undefined;
        if (slot === undefined) {
          this.#waitSlot(next);
          return;
        }
        const n = Math.min(Pool.SLOT_SIZE, len - off);
        pool.bytes(slot).set(
          n === len ? chunk : chunk.subarray(off, off + n),
        );
        this.#sendSlot(slot, 0, n, sent);
        off += n;
      }
    };
    next();
  }

  #sendSlot(
    slot: number,
    offset: number,
    len: number,
    sent: (status: number, bytes: number) => void,
  ): void {
    this.#rt.submitNumbers(
      Op.STREAM_SEND,
      this.#handle,
      slot,
      len,
      this.#sendFlags,
      offset,
      (status) => {
        // msquic did not take it: no SEND_COMPLETE will bring the slot back.
        if (status !== 0) this.#rt.pool.release(slot);
        sent(status, len);
      },
    );
  }

  /**
   * The completion of one write made of `pieces` sends: resolves (or waits for the window)
   * when the last piece was handed to msquic, rejects on the first failure. Bytes msquic did
   * not take leave the outstanding count at once (no SEND_COMPLETE will come for them).
   */
  #sentOne(
    done: PromiseWithResolvers<void>,
    pieces: number,
  ): (status: number, bytes: number) => void {
    let left = pieces;
    let failed = 0;
    return (status, bytes) => {
      if (status !== 0) {
        if (failed === 0) failed = status;
        this.#outstanding -= bytes;
      }
      if (--left > 0) return;
      if (failed !== 0) {
        if (!this.#sendError && !this.#closed && failed === Status.ABORTED) {
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
    };
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
    this.#owner.requestStart();
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
    this.#cancelSlotWaits();
    // A file sending on the stream is settled by the shim's FILE_DONE, once its reads in flight
    // are done and the file is closed: its own error (a read that failed) comes first there.
    if (this.#file?.sending && this.#file.ended) {
      this.#fileFailed(this.#sendError);
    }
  }

  // ---- end ----

  /**
   * Frees the native stream. Called on SHUTDOWN_COMPLETE, after which msquic sends nothing; a
   * peer stream the application has not accepted yet keeps its handle (and its credit) until
   * it is accepted, or until `force` (its connection is gone).
   */
  finish(connectionShutdown: boolean, force = false): void {
    if (this.#closed) return;
    if (!this.#accepted && !force) {
      this.#finishPending = connectionShutdown;
      return;
    }
    // A file transfer is settled by the shim's FILE_DONE, which can follow the stream's end
    // (a receive attached after it, reads or writes still in flight, a read or write that
    // failed and aborted the stream): keep listening until then.
    if (
      this.#file && !this.#file.finished && !connectionShutdown && !force
    ) {
      this.#finishPending = false;
      return;
    }
    const err = connectionShutdown ? this.#owner.failure() : new StoqError(
      "PEER_RESET",
      "The stream was shut down before it finished",
    );
    // Data msquic already handed over is not lost: copy it out before its buffers go away
    // (for a reader that can still take it).
    if (this.#accepted && this.#mode === "stream") this.#deliver(true);
    // Loans out point into buffers the close frees: detach them first.
    for (const loan of this.#loans) {
      for (const ab of loan.buffers) detach(ab);
      loan.buffers = [];
      loan.released = true;
    }
    this.#loans = [];
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
    // The figures stay readable after the handle is gone.
    if (this.writable) {
      try {
        this.#finalStats = this.#sendStats();
      } catch { /* no figures from msquic */ }
    }
    const fileError = this.#file && !this.#file.finished
      ? this.#file.sending ? this.#sendError ?? err : this.#readError ?? err
      : undefined;
    this.#closed = true;
    this.#cancelSlotWaits();
    this.#rt.unregister(this.id);
    // Operations queued for this handle (the RECV_COMPLETE just above, a shutdown) must reach
    // the shim before the handle is freed, or they would run on freed memory.
    this.#rt.flush();
    const freed = this.#rt.closeHandle(CloseKind.STREAM, this.ptr);
    // Freeing the stream waits for a transfer's reads and writes in flight and closes its file
    // (the connection went first, so no FILE_DONE will): settle the transfer after that.
    if (fileError) freed.then(() => this.#fileFailed(fileError));
    this.#owner.streamClosed(this);
  }
}

/** A NUL-terminated C string. */
function cstring(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${text}\0`);
}

/** A StoqError for an errno from the shim's file plane. */
export function fileError(
  lib: Runtime["lib"],
  errno: number,
  what: string,
): StoqError {
  const text = new Uint8Array(256);
  const n = lib.stoq_strerror(errno, text, text.length);
  return new StoqError(
    "FILE_ERROR",
    `Cannot ${what}: ${new TextDecoder().decode(text.subarray(0, n))}`,
    { status: errno },
  );
}

/**
 * Checks a file transfer's arguments and Deno's permission for the path; returns the path as
 * a string.
 */
export function checkFile(
  path: unknown,
  options: unknown,
  access: "read" | "write",
  what: string,
): string {
  let file: string;
  if (path instanceof URL) {
    if (path.protocol !== "file:") {
      throw new StoqError(
        "INVALID_ARGUMENT",
        `Cannot ${what} as 'path' must be a file: URL or a path: current value is ${path.href}`,
      );
    }
    file = decodeURIComponent(path.pathname);
  } else if (
    typeof path === "string" && path.length > 0 && !path.includes("\0")
  ) {
    file = path;
  } else {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot ${what} as 'path' must be a non-empty path: current value is ${
        typeof path === "string" ? JSON.stringify(path) : typeof path
      }`,
    );
  }
  if (typeof options !== "object" || options === null) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot ${what} as the options must be an object: current value is ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  const o = options as StoqFileOptions;
  if (o.onProgress !== undefined && typeof o.onProgress !== "function") {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot ${what} as 'onProgress' must be a function: current value is ${typeof o
        .onProgress}`,
    );
  }
  const step = o.progressInterval;
  if (
    step !== undefined &&
    (!Number.isSafeInteger(step) || step < 1)
  ) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot ${what} as 'progressInterval' must be a positive integer: current value is ${step}`,
    );
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw new StoqError(
      "INVALID_ARGUMENT",
      `Cannot ${what} as 'signal' must be an AbortSignal: current value is ${typeof o
        .signal}`,
    );
  }
  if (o.signal?.aborted) {
    throw new StoqError(
      "ABORTED",
      `Gave up to ${what}: the signal was aborted`,
      { cause: o.signal.reason },
    );
  }
  // The shim opens the file itself, so it asks for Deno's permission the way Deno.open would.
  const state = Deno.permissions.querySync({ name: access, path: file }).state;
  if (state !== "granted") {
    throw new StoqError(
      "PERMISSION_DENIED",
      `Cannot ${what}: ${access} access to ${file} is not granted (run with --allow-${access}=${file})`,
    );
  }
  return file;
}
