/**
 * STOQ transport: IPv6 QUIC endpoints, connections and streams over msquic.
 *
 * @module
 */
export {
  type StoqCertificate,
  type StoqConnectOptions,
  StoqEndpoint,
  type StoqEndpointOptions,
  StoqListener,
  type StoqListenOptions,
} from "./endpoint.ts";
export {
  type PeerCertificate,
  type PeerVerifier,
  type StoqAddr,
  type StoqCloseInfo,
  StoqConnection,
  type StoqConnectionStats,
  type StoqStreamOptions,
} from "./connection.ts";
export type {
  StoqBidirectionalStream,
  StoqFileOptions,
  StoqFileResult,
  StoqInPlaceReader,
  StoqReceiveLoan,
  StoqReceiveStream,
  StoqSendStream,
  StoqSendStreamStats,
  StoqWriteBuffer,
} from "./stream.ts";
export type { CongestionControl, StoqTransportOptions } from "./options.ts";
export type { ExecutionProfile } from "./runtime.ts";
