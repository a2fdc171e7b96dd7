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
 * TrustChain, the built-in certificate authority, provisions certificates through the RFC 6962
 * precertificate flow (SCTs embedded in the certificates), serves its log as C2SP static-ct-api,
 * federates CAs and rotates identities: see {@linkcode CertificateAuthority},
 * {@linkcode staticCtHandler}, {@linkcode Federation} and {@linkcode listenWithIdentity}. Its
 * state lives in SQLite ({@linkcode SqliteCaStore}) or, for several CA nodes sharing one CA, in
 * PostgreSQL ({@linkcode PostgresCaStore}); {@linkcode openCaStore} picks one from a URL.
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
  type StoqStreamOptions,
  type StoqTransportOptions,
} from "./src/transport/mod.ts";
export {
  type CertificateSummary,
  type HandshakeFigures,
  Phoenix,
  PHOENIX_ALPN,
  PhoenixBuilder,
  PhoenixConnection,
  phoenixDataDir,
  type PhoenixMessage,
  type PhoenixOptions,
  type PhoenixStats,
  type PhoenixStream,
  type RemoteTrustChain,
  type StreamSource,
} from "./src/phoenix/mod.ts";
export {
  ConnectionPool,
  type ConnectionPoolOptions,
  type ConnectionPoolStats,
  type PoolLease,
} from "./src/pool/mod.ts";
export {
  type DevCertificates,
  makeDevCertificates,
} from "./src/node/dev_cert.ts";
export {
  appendLeaves,
  type BundleSignature,
  type CaAudit,
  type CaIdentityRecord,
  canonicalSerial,
  type CaStore,
  CertificateAuthority,
  type CertificateAuthorityOptions,
  certificateLogLeaf,
  type CertificateRecord,
  CertificateRotator,
  type CertificateRotatorOptions,
  type Checkpoint,
  type CompactRange,
  compactRangeIds,
  compactRangeRoot,
  connectWithFederation,
  consistencyProofFromNodes,
  type CsrLimits,
  decodeSct,
  DEFAULT_CSR_LIMITS,
  type EcdsaSigner,
  ED25519_NOTE_TYPE,
  ed25519NoteSigner,
  embeddedScts,
  encodeSct,
  evidenceFromServices,
  evidenceSource,
  FALCON_COSIGNATURE_OID,
  FALCON_NOTE_IDENTIFIER,
  FALCON_NOTE_TYPE,
  type FalconCertificateFields,
  falconCertificateMessage,
  type FalconKeyPair,
  falconNoteSigner,
  type FalconOptions,
  falconSign,
  FalconSigner,
  type FalconVariantName,
  falconVerify,
  type FederatedConnectOptions,
  Federation,
  type FederationMember,
  type FederationOptions,
  federationVerifier,
  type FederationVerifierOptions,
  formatCheckpoint,
  generateFalconKeyPair,
  generateLogKeys,
  type IdentityComponent,
  IdentityListener,
  type IdentityListenOptions,
  type IdentityRotationOptions,
  type IdentitySeal,
  inclusionProofFromNodes,
  integrateEntries,
  type Integration,
  type IssuedCertificate,
  type IssueOptions,
  type IssueRequest,
  type KeyWrapping,
  leafHash,
  listenWithIdentity,
  type LogAudit,
  type LogEntryRecord,
  logIdOf,
  type LogKeys,
  LogSigner,
  MAX_COMMON_NAME,
  MemoryCaStore,
  MerkleTree,
  merkleTreeLeaf,
  nameAllowed,
  nodeHash,
  type NodeId,
  type NodeReader,
  noteKeyHash,
  type NoteSigner,
  type NoteVerifier,
  noteVerifier,
  noteVkey,
  openCaStore,
  type OpenedNote,
  openNote,
  parseCheckpoint,
  parseTileLeaf,
  parseVkey,
  peerChain,
  type PeerEvidenceSource,
  peerIdentity,
  PostgresCaStore,
  type PostgresCaStoreOptions,
  PRECERT_POISON_OID,
  type PrecertEntry,
  type ProvisionedIdentity,
  type RandomSource,
  type RevocationReason,
  type RevocationRecord,
  type RevocationSeal,
  type RevokeOutcome,
  RFC6962_NOTE_TYPE,
  rfc6962NoteSigner,
  rootFromNodes,
  type RotationClock,
  type Sct,
  SCT_LIST_OID,
  type SequencedIssuance,
  serveStaticCt,
  type ServeStaticCtOptions,
  type ServiceInfo,
  type SignedStatus,
  type SignedTrustBundle,
  signNote,
  SqliteCaStore,
  staticCtHandler,
  type StaticCtOptions,
  statusMessage,
  type StoreCounts,
  StoredLog,
  type StoredTreeHead,
  SYSTEM_CLOCK,
  SYSTEM_RANDOM,
  type TileLeaf,
  tileLeaf,
  timestampedEntry,
  TransparencyLog,
  type TransparencyLogOptions,
  type TransparencyProof,
  type TreeNode,
  type TreeState,
  type TrustBundle,
  trustBundleMessage,
  TRUSTCHAIN_ALPN,
  TrustChainClient,
  type TrustChainClientOptions,
  type TrustChainFetchRootOptions,
  TrustChainHandler,
  type TrustChainHandlerOptions,
  TrustChainService,
  type TrustChainServiceOptions,
  type VerifiedPeer,
  verifyCertificateFalcon,
  verifyConsistency,
  verifyInclusion,
  type VerifyPeerOptions,
  verifySct,
  verifyStatus,
  verifyTransparencyProof,
} from "./src/trustchain/mod.ts";
