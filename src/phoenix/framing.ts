/**
 * Phoenix's wire format. Every message, stream and multiplexed chunk travels on its own
 * bidirectional QUIC stream that starts with a header; the receiver answers on the same stream
 * with one status byte once it holds the whole thing (so `sendData` resolves on delivery and a
 * refusal comes back as an error), then FIN.
 *
 * ```
 * message  0x50 0x01 | length u64                                  | payload (length bytes)
 * stream   0x50 0x02                                               | bytes until FIN
 * chunk    0x50 0x03 | transfer id (16) | sha256 (32) | total u64 | offset u64 | length u32 | bytes
 * reply    status u8 (Reply)
 * ```
 *
 * @module
 */

import { StoqError } from "../errors.ts";

/** The ALPN Phoenix apps speak. */
export const PHOENIX_ALPN = "stoq-phoenix/1";

const MAGIC = 0x50;

/** What a stream carries. */
export const Kind = { MESSAGE: 1, STREAM: 2, CHUNK: 3 } as const;

/** The receiver's answer. */
export const Reply = { OK: 0, TOO_LARGE: 1, REFUSED: 2, MALFORMED: 3 } as const;

/** Bytes of a chunk header. */
export const CHUNK_HEADER_SIZE = 2 + 16 + 32 + 8 + 8 + 4;

/** Header of a message of `length` bytes. */
export function messageHeader(length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(10);
  out[0] = MAGIC;
  out[1] = Kind.MESSAGE;
  new DataView(out.buffer).setBigUint64(2, BigInt(length));
  return out;
}

/** Header of a stream. */
export function streamHeader(): Uint8Array<ArrayBuffer> {
  return Uint8Array.of(MAGIC, Kind.STREAM);
}

/** One chunk of a multiplexed transfer. */
export interface ChunkInfo {
  /** Random transfer id shared by every chunk of the transfer. */
  transfer: Uint8Array;
  /** SHA-256 of the whole payload. */
  sha256: Uint8Array;
  /** Bytes in the whole payload. */
  total: number;
  /** Where this chunk starts. */
  offset: number;
  /** Bytes in this chunk. */
  length: number;
}

/** Header of a chunk. */
export function chunkHeader(info: ChunkInfo): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(CHUNK_HEADER_SIZE);
  const view = new DataView(out.buffer);
  out[0] = MAGIC;
  out[1] = Kind.CHUNK;
  out.set(info.transfer, 2);
  out.set(info.sha256, 18);
  view.setBigUint64(50, BigInt(info.total));
  view.setBigUint64(58, BigInt(info.offset));
  view.setUint32(66, info.length);
  return out;
}

/** Decodes a chunk header (after the kind byte was read). */
export function parseChunkHeader(bytes: Uint8Array): ChunkInfo {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const total = Number(view.getBigUint64(50));
  const offset = Number(view.getBigUint64(58));
  const length = view.getUint32(66);
  if (offset + length > total || !Number.isSafeInteger(total)) {
    throw protocolError("a chunk lies outside its transfer");
  }
  return {
    transfer: bytes.slice(2, 18),
    sha256: bytes.slice(18, 50),
    total,
    offset,
    length,
  };
}

/** The error for bytes that do not follow this format. */
export function protocolError(what: string): StoqError {
  return new StoqError(
    "PROTOCOL_ERROR",
    `The peer broke the Phoenix framing: ${what}`,
  );
}

/** Reads `[magic, kind]`; undefined when the stream ended first. */
export async function readKind(reader: ExactReader): Promise<number> {
  const head = await reader.read(2);
  if (head[0] !== MAGIC) {
    throw protocolError("the stream does not start with a Phoenix header");
  }
  return head[1];
}

/**
 * Reads exact byte counts off a stream, keeping what came past them, and hands the rest over as
 * a stream of its own.
 */
export class ExactReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #left: Uint8Array | undefined;

  constructor(readable: ReadableStream<Uint8Array>) {
    this.#reader = readable.getReader();
  }

  async #more(): Promise<boolean> {
    const { value, done } = await this.#reader.read();
    if (done) return false;
    this.#left = this.#left?.byteLength ? concat(this.#left, value) : value;
    return true;
  }

  /** Exactly `n` bytes; `PROTOCOL_ERROR` when the stream ends first. */
  async read(n: number): Promise<Uint8Array> {
    while ((this.#left?.byteLength ?? 0) < n) {
      if (!await this.#more()) {
        throw protocolError(`the stream ended inside a ${n}-byte field`);
      }
    }
    const out = this.#left!.subarray(0, n);
    this.#left = this.#left!.subarray(n);
    return out;
  }

  /** Fills `out` completely, copying each received chunk once. */
  async readInto(out: Uint8Array): Promise<void> {
    let off = 0;
    if (this.#left?.byteLength) {
      const take = Math.min(this.#left.byteLength, out.byteLength);
      out.set(this.#left.subarray(0, take));
      this.#left = this.#left.subarray(take);
      off = take;
    }
    while (off < out.byteLength) {
      const { value, done } = await this.#reader.read();
      if (done) {
        throw protocolError("the stream ended before its declared length");
      }
      const take = Math.min(value.byteLength, out.byteLength - off);
      out.set(value.subarray(0, take), off);
      off += take;
      if (take < value.byteLength) this.#left = value.subarray(take);
    }
  }

  /** Whether the stream has ended (nothing is left and the FIN came). */
  async atEnd(): Promise<boolean> {
    if (this.#left?.byteLength) return false;
    return !await this.#more();
  }

  /** What remains, as a stream; cancelling it cancels the QUIC stream (STOP_SENDING). */
  rest(): ReadableStream<Uint8Array> {
    const reader = this.#reader;
    let first = this.#left?.byteLength ? this.#left : undefined;
    this.#left = undefined;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (first) {
          controller.enqueue(first);
          first = undefined;
          return;
        }
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
  }

  /** Stops reading (STOP_SENDING with `code`). */
  cancel(code: number): Promise<void> {
    return this.#reader.cancel(code).catch(() => {});
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

/**
 * A bounded queue the receive side fills and the app drains; a full queue makes producers wait
 * (and with them QUIC flow control), so an app that does not read bounds what it holds.
 */
export class Inbox<T> implements AsyncIterable<T> {
  readonly #maxItems: number;
  readonly #maxBytes: number;
  readonly #items: { item: T; size: number }[] = [];
  #bytes = 0;
  #readers: PromiseWithResolvers<IteratorResult<T>>[] = [];
  #room: (() => void)[] = [];
  #closed = false;

  constructor(maxItems: number, maxBytes: number) {
    this.#maxItems = maxItems;
    this.#maxBytes = maxBytes;
  }

  /** Queues `item` once there is room; false when the inbox closed meanwhile. */
  async push(item: T, size: number): Promise<boolean> {
    while (
      !this.#closed && this.#readers.length === 0 && this.#items.length > 0 &&
      (this.#items.length >= this.#maxItems ||
        this.#bytes + size > this.#maxBytes)
    ) {
      await new Promise<void>((resolve) => this.#room.push(resolve));
    }
    if (this.#closed) return false;
    const reader = this.#readers.shift();
    if (reader) reader.resolve({ value: item, done: false });
    else {
      this.#items.push({ item, size });
      this.#bytes += size;
    }
    return true;
  }

  /** The next item; done once closed and drained. */
  next(): Promise<IteratorResult<T>> {
    const first = this.#items.shift();
    if (first) {
      this.#bytes -= first.size;
      this.#room.shift()?.();
      return Promise.resolve({ value: first.item, done: false });
    }
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    const reader = Promise.withResolvers<IteratorResult<T>>();
    this.#readers.push(reader);
    this.#room.shift()?.();
    return reader.promise;
  }

  /** Iterates the items; leaving the loop early leaves the rest queued for the next one. */
  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    const it: AsyncIterableIterator<T> = {
      next: () => this.next(),
      return: () => Promise.resolve({ value: undefined, done: true }),
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  /** Ends iteration; queued items are still handed out. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const r of this.#readers.splice(0)) {
      r.resolve({ value: undefined, done: true });
    }
    for (const wake of this.#room.splice(0)) wake();
  }
}
