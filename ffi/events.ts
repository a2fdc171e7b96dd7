/**
 * Named fields of each completion record kind (`enum stoq_event_type` in `native/stoq.h`).
 *
 * Each reader takes the batch and a record index and allocates nothing, so the transport's
 * event handlers read `Recv.length(r, i)` instead of `r.field(i, 2)`.
 *
 * @module
 */

import type { Records } from "./abi.ts";

type Reader<T> = (r: Records, i: number) => T;

const num = (k: number): Reader<number> => (r, i) => r.field(i, k);
const flag = (k: number): Reader<boolean> => (r, i) => r.field(i, k) === 1;
const ptr = (k: number): Reader<Deno.PointerValue> => (r, i) =>
  Deno.UnsafePointer.create(BigInt(r.field(i, k)));

/** The object a record is about (a connection, listener or stream id). */
export const recordId: Reader<number> = num(0);

/** `CONN_CONNECTED` */
export const Connected = { resumed: flag(1) } as const;

/** `CONN_SHUTDOWN_TRANSPORT` */
export const TransportShutdown = {
  status: ((r, i) => r.status(i)) as Reader<number>,
} as const;

/** `CONN_SHUTDOWN_PEER`, `STREAM_PEER_SEND_ABORTED`, `STREAM_PEER_RECV_ABORTED` */
export const PeerCode = {
  appCode: ((r, i) => r.big(i, 1)) as Reader<bigint>,
} as const;

/** `CONN_PEER_STREAM` */
export const PeerStream = {
  streamId: num(1),
  unidirectional: flag(2),
  handle: ptr(3),
  zeroRtt: flag(4),
} as const;

/** `CONN_RESUMED` (servers) */
export const Resumed = {
  /** SHA-256 of the client certificate the resumed session verified (all zero for none). */
  peerHash: ((r, i) => r.buffer.slice(i * 64 + 16, i * 64 + 48)) as Reader<
    Uint8Array<ArrayBuffer>
  >,
} as const;

/** `CONN_DGRAM_STATE` */
export const DatagramState = {
  sendEnabled: flag(1),
  maxSendLength: num(2),
} as const;

/** `CONN_TICKET`: a shim buffer JS copies, then frees. */
export const OwnedBuffer = { data: ptr(1), length: num(2) } as const;

/** `CONN_PEER_CERT` (JS decides) */
export const PeerCert = {
  leaf: ptr(1),
  leafLength: num(2),
  chain: ptr(3),
  chainLength: num(4),
} as const;

/** `CONN_PEER_REJECTED` */
export const PeerRejected = {
  /** OpenSSL's X509 verify error (0 when the reason is `MISSING`). */
  verifyError: ((r, i) => r.status(i)) as Reader<number>,
  /** One of {@linkcode Reject}'s values. */
  reason: num(1),
} as const;

/** `LISTENER_NEW_CONN` */
export const NewConnection = { connectionId: num(1), handle: ptr(2) } as const;

/** `STREAM_START_COMPLETE` */
export const StartComplete = {
  status: ((r, i) => r.status(i)) as Reader<number>,
  quicId: ((r, i) => r.big(i, 1)) as Reader<bigint>,
  peerAccepted: flag(2),
} as const;

/** `STREAM_RECV`: one of msquic's buffers, held until `STREAM_RECV_COMPLETE`. */
export const Recv = {
  data: num(1),
  length: num(2),
  /** The FIN flag; set only on an indication's last record. */
  fin: flag(3),
  lastOfIndication: flag(4),
  /** The stream offset of the buffer's first byte. */
  offset: num(6),
} as const;

/** `STREAM_SEND_COMPLETE` */
export const SendComplete = {
  bytes: num(1),
  canceled: flag(2),
  /** The pool slot + 1 the send used (0: none). */
  slot: num(3),
} as const;

/** `FILE_PROGRESS` */
export const FileProgress = { bytes: num(1) } as const;

/** `FILE_DONE` */
export const FileDone = {
  /** 0, an errno (file I/O), or a msquic status (the stream failed). */
  status: ((r, i) => r.status(i)) as Reader<number>,
  bytes: num(1),
  /** The status is an errno of the file's own I/O (else the stream failed). */
  fileIo: flag(2),
} as const;

/** `STREAM_SEND_SHUTDOWN_COMPLETE` */
export const SendShutdownComplete = { graceful: flag(1) } as const;

/** `STREAM_SHUTDOWN_COMPLETE` */
export const StreamShutdownComplete = { connectionShutdown: flag(1) } as const;

/** `STREAM_IDEAL_SEND_BUFFER` */
export const IdealSendBuffer = { bytes: num(1) } as const;
