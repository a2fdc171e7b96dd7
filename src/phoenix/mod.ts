/**
 * Phoenix: the one-line API over STOQ — automatic certificates, a transparent connection pool,
 * messages and streams, multiplexed sends and built-in monitoring.
 *
 * @module
 */
export {
  Phoenix,
  PhoenixConnection,
  type PhoenixMessage,
  type PhoenixOptions,
  type PhoenixStream,
  type StreamSource,
} from "./phoenix.ts";
export { PhoenixBuilder } from "./builder.ts";
export {
  type CertificateSummary,
  phoenixDataDir,
  type RemoteTrustChain,
} from "./identity.ts";
export type { HandshakeFigures, PhoenixStats } from "./stats.ts";
export { PHOENIX_ALPN } from "./framing.ts";
