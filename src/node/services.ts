/**
 * The node's own services over STOQ, chosen by ALPN:
 *
 * - `stoq-echo`: every bidirectional stream is sent back as it arrives, every datagram is
 *   returned, unidirectional streams are read and dropped.
 * - `stoq-sink`: everything is read and dropped; a bidirectional stream is answered, once the
 *   peer has finished it, with the number of bytes it carried (8 bytes, big-endian) — for
 *   throughput tests from afar.
 *
 * (`trustchain/1` is TrustChain's own handler.) Each stream is counted through a
 * {@linkcode StreamTracker}, which can also refuse new streams while the node drains.
 *
 * @module
 */

import { StoqError } from "../errors.ts";
import type {
  StoqBidirectionalStream,
  StoqConnection,
  StoqReceiveStream,
} from "../transport/mod.ts";

/** The stream reset code for a stream refused while the node shuts down. */
export const STREAM_REFUSED_SHUTDOWN = 0x12;

/** What a service reports about its streams. */
export interface StreamTracker {
  /** A stream arrived; false when it must be refused (the node is draining). */
  begin(): boolean;
  /** A stream finished (however it ended). */
  end(): void;
  /** Payload bytes received from and sent to the peer. */
  bytes(received: number, sent: number): void;
  /** A stream failed with `error`. */
  error(error: unknown): void;
}

function refuse(stream: {
  readable?: ReadableStream<Uint8Array>;
  writable?: WritableStream<Uint8Array>;
}): void {
  stream.readable?.cancel(STREAM_REFUSED_SHUTDOWN).catch(() => {});
  stream.writable?.abort(STREAM_REFUSED_SHUTDOWN).catch(() => {});
}

/** Whether an error is just the connection or stream going away as peers do. */
function ordinary(error: unknown): boolean {
  return error instanceof StoqError &&
    (error.code === "CONNECTION_CLOSED" || error.code === "CLOSED");
}

async function each<T>(
  streams: ReadableStream<T>,
  fn: (item: T) => void,
): Promise<void> {
  try {
    for await (const item of streams) fn(item);
  } catch {
    // The connection ended; its streams end with it.
  }
}

/** Runs `work` on `stream` as one tracked stream, or refuses the stream while draining. */
function tracked(
  tracker: StreamTracker,
  stream: {
    readable?: ReadableStream<Uint8Array>;
    writable?: WritableStream<Uint8Array>;
  },
  work: () => Promise<void>,
): void {
  if (!tracker.begin()) return refuse(stream);
  work().catch((err) => {
    if (!ordinary(err)) tracker.error(err);
  }).finally(() => tracker.end());
}

async function drain(
  readable: StoqReceiveStream,
  tracker: StreamTracker,
): Promise<number> {
  // msquic's buffers lent in place: counting needs no copy into JS.
  const lender = readable.getInPlaceReader();
  let total = 0;
  for (let loan; (loan = await lender.read()) !== null;) {
    total += loan.byteLength;
    tracker.bytes(loan.byteLength, 0);
    loan.release();
  }
  return total;
}

/** Reads and drops the peer's unidirectional streams until the connection ends. */
function dropUnidirectional(
  conn: StoqConnection,
  tracker: StreamTracker,
): Promise<void> {
  return each(conn.incomingUnidirectionalStreams, (readable) => {
    tracked(
      tracker,
      { readable },
      () => drain(readable, tracker).then(() => {}),
    );
  });
}

/** Hands every datagram to `fn` until the connection ends. */
async function eachDatagram(
  conn: StoqConnection,
  fn: (datagram: Uint8Array) => void,
): Promise<void> {
  try {
    while (true) fn(await conn.readDatagram());
  } catch {
    // The connection ended.
  }
}

/**
 * Serves `stoq-echo` on a connection until it ends.
 *
 * @param conn The connection.
 * @param tracker Counts streams and bytes.
 * @returns Resolves when the connection has ended.
 */
export async function serveEcho(
  conn: StoqConnection,
  tracker: StreamTracker,
): Promise<void> {
  const bidi = each(
    conn.incomingBidirectionalStreams,
    (s: StoqBidirectionalStream) => {
      tracked(tracker, s, () =>
        s.readable.pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              tracker.bytes(chunk.byteLength, chunk.byteLength);
              controller.enqueue(chunk);
            },
          }),
        ).pipeTo(s.writable));
    },
  );
  const datagrams = eachDatagram(conn, (d) => {
    tracker.bytes(d.byteLength, d.byteLength);
    conn.sendDatagram(d).catch(() => {/* lost, as datagrams may be */});
  });
  await Promise.all([bidi, dropUnidirectional(conn, tracker), datagrams]);
}

/**
 * Serves `stoq-sink` on a connection until it ends.
 *
 * @param conn The connection.
 * @param tracker Counts streams and bytes.
 * @returns Resolves when the connection has ended.
 */
export async function serveSink(
  conn: StoqConnection,
  tracker: StreamTracker,
): Promise<void> {
  const bidi = each(
    conn.incomingBidirectionalStreams,
    (s: StoqBidirectionalStream) => {
      tracked(tracker, s, async () => {
        const total = await drain(s.readable, tracker);
        const receipt = new Uint8Array(8);
        new DataView(receipt.buffer).setBigUint64(0, BigInt(total));
        tracker.bytes(0, receipt.byteLength);
        const w = s.writable.getWriter();
        await w.write(receipt);
        await w.close();
      });
    },
  );
  const datagrams = eachDatagram(conn, (d) => tracker.bytes(d.byteLength, 0));
  await Promise.all([bidi, dropUnidirectional(conn, tracker), datagrams]);
}
