/**
 * STOQ: QUIC over IPv6 for Deno, on msquic through a small C shim, with TrustChain, a built-in
 * certificate authority.
 *
 * The transport is shaped like Deno's own QUIC API (`Deno.QuicEndpoint`), so switching is a
 * one-line change: endpoints listen and connect, connections open and accept streams, streams
 * are Web Streams.
 *
 * @example Echo over STOQ
 * ```ts ignore
 * import { StoqEndpoint } from "./mod.ts";
 *
 * await using server = new StoqEndpoint({ hostname: "::1", port: 0 });
 * const listener = server.listen({ alpnProtocols: ["echo"], cert, key });
 * (async () => {
 *   for await (const conn of listener) {
 *     for await (const { readable, writable } of conn.incomingBidirectionalStreams) {
 *       readable.pipeTo(writable);
 *     }
 *   }
 * })();
 *
 * await using client = new StoqEndpoint();
 * const conn = await client.connect({
 *   hostname: "::1",
 *   port: listener.addr.port,
 *   alpnProtocols: ["echo"],
 *   caCerts: [ca],
 * });
 * const { readable, writable } = await conn.createBidirectionalStream();
 * ```
 *
 * @module
 */

export {
  StoqError,
  type StoqErrorCode,
  type StoqErrorOptions,
} from "./src/errors.ts";
export {
  type CongestionControl,
  type ExecutionProfile,
  type PeerCertificate,
  type PeerVerifier,
  type StoqAddr,
  type StoqBidirectionalStream,
  type StoqCertificate,
  type StoqCloseInfo,
  type StoqConnection,
  type StoqConnectionStats,
  type StoqConnectOptions,
  StoqEndpoint,
  type StoqEndpointOptions,
  type StoqListener,
  type StoqListenOptions,
  type StoqReceiveStream,
  type StoqSendStream,
  type StoqTransportOptions,
} from "./src/transport/mod.ts";
export {
  type DevCertificates,
  makeDevCertificates,
} from "./src/node/dev_cert.ts";
