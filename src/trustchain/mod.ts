/**
 * TrustChain: STOQ's certificate authority, transparency log and federation.
 *
 * - {@linkcode CertificateAuthority}: ECDSA P-256 root issuing short-lived leaves from CSRs under a
 *   strict RFC 5280 profile; every leaf goes through the RFC 6962 precertificate flow and embeds
 *   its SCT. `provision()` gives an app `{ cert, key }` plus its transparency proof.
 * - {@linkcode TransparencyLog}: an RFC 6962 log (precertificate entries, ECDSA P-256 SCTs and tree
 *   heads, log ID = SHA-256 of the key's SubjectPublicKeyInfo) in an RFC 9162 tree, published as
 *   C2SP checkpoints co-signed with Falcon-512; {@linkcode staticCtHandler} serves it as C2SP
 *   static-ct-api (checkpoint, tiles, issuers).
 * - {@linkcode FalconSigner}: native Falcon-512 (PQClean) with the key expanded once.
 * - Storage behind {@linkcode CaStore}: {@linkcode SqliteCaStore} (one file per CA, the default),
 *   {@linkcode PostgresCaStore} (one database shared by several CA processes), chosen by URL with
 *   {@linkcode openCaStore}. The store sequences (assigns leaf indices in the issuing
 *   transaction); integration is a pure function of the committed tree state and the new entries;
 *   start-up reads the tree's compact range, not the log. The identity, revocations and every row
 *   an issuance writes are authenticated and checked (`CA_TAMPERED`, `LOG_TAMPERED`).
 * - {@linkcode Federation}: signed trust bundle and `verifyPeer` for the transport (root, validity,
 *   Falcon co-signature, embedded SCT checked offline, inclusion proof, status).
 * - {@linkcode CertificateRotator}: renews an identity at two thirds of its lifetime.
 * - On STOQ: {@linkcode listenWithIdentity} serves a self-renewing identity (optionally requiring
 *   federation client certificates), {@linkcode connectWithFederation} validates servers against
 *   the federation and their transparency proofs, {@linkcode peerIdentity} says who a peer is.
 * - {@linkcode TrustChainService} serves a CA over STOQ (ALPN `trustchain/1`: issuance, status,
 *   proofs, bundle, tree heads); {@linkcode TrustChainClient} provisions apps remotely and
 *   {@linkcode evidenceFromServices} feeds a federation proofs fetched from the services.
 *
 * Layout: `core/` holds pure functions of their inputs, a clock and an injected
 * {@linkcode RandomSource}; `ca.ts` orchestrates; `store/` persists; `service/` speaks the
 * protocols; `binding.ts` wires in the transport.
 *
 * @example Provision, then validate as a federated peer
 * ```ts
 * import { CertificateAuthority, Federation, MemoryCaStore } from "./mod.ts";
 * const ca = await CertificateAuthority.open({ name: "ca-1", store: new MemoryCaStore() });
 * const bundle = { version: 1, members: [ca.member] };
 * const fed = await Federation.create({ bundle, signatures: [await ca.endorse(bundle)] });
 * const { chainDer, proof } = await ca.provision("my-app");
 * console.log((await fed.verifyPeer({ chain: chainDer, proof })).names); // [ "my-app.stoq.local" ]
 * ```
 *
 * @module
 */

export {
  type CaAudit,
  CertificateAuthority,
  type CertificateAuthorityOptions,
  evidenceSource,
  type IssuedCertificate,
  type IssueOptions,
  type ProvisionedIdentity,
} from "./ca.ts";
export { type CsrLimits, DEFAULT_CSR_LIMITS } from "./core/policy.ts";
export { nameAllowed } from "./core/policy.ts";
export { MAX_COMMON_NAME } from "./core/leaf.ts";
export { type RandomSource, SYSTEM_RANDOM } from "./core/random.ts";
export type { EcdsaSigner } from "./core/ecdsa.ts";
export {
  generateLogKeys,
  integrateEntries,
  type LogKeys,
  LogSigner,
  TransparencyLog,
  type TransparencyLogOptions,
  type TransparencyProof,
  verifyTransparencyProof,
} from "./core/ct_log.ts";
export {
  certificateLogLeaf,
  decodeSct,
  embeddedScts,
  encodeSct,
  logIdOf,
  merkleTreeLeaf,
  parseTileLeaf,
  PRECERT_POISON_OID,
  type PrecertEntry,
  type Sct,
  SCT_LIST_OID,
  type TileLeaf,
  tileLeaf,
  timestampedEntry,
  verifySct,
} from "./core/rfc6962.ts";
export {
  type Checkpoint,
  ED25519_NOTE_TYPE,
  ed25519NoteSigner,
  FALCON_NOTE_IDENTIFIER,
  FALCON_NOTE_TYPE,
  falconNoteSigner,
  formatCheckpoint,
  noteKeyHash,
  type NoteSigner,
  type NoteVerifier,
  noteVerifier,
  noteVkey,
  type OpenedNote,
  openNote,
  parseCheckpoint,
  parseVkey,
  RFC6962_NOTE_TYPE,
  rfc6962NoteSigner,
  signNote,
} from "./core/checkpoint.ts";
export {
  FALCON_COSIGNATURE_OID,
  type FalconCertificateFields,
  falconCertificateMessage,
  type FalconKeyPair,
  type FalconOptions,
  falconSign,
  FalconSigner,
  type FalconVariantName,
  falconVerify,
  generateFalconKeyPair,
  verifyCertificateFalcon,
} from "./core/falcon.ts";
export {
  type BundleSignature,
  Federation,
  type FederationMember,
  type FederationOptions,
  type PeerEvidenceSource,
  type SignedTrustBundle,
  type TrustBundle,
  trustBundleMessage,
  type VerifiedPeer,
  type VerifyPeerOptions,
} from "./core/federation.ts";
export {
  appendLeaves,
  type CompactRange,
  compactRangeIds,
  compactRangeRoot,
  consistencyProofFromNodes,
  inclusionProofFromNodes,
  leafHash,
  MerkleTree,
  nodeHash,
  type NodeId,
  type NodeReader,
  rootFromNodes,
  type TreeNode,
  verifyConsistency,
  verifyInclusion,
} from "./core/merkle.ts";
export {
  canonicalSerial,
  type RevocationReason,
  type SignedStatus,
  statusMessage,
  verifyStatus,
} from "./core/status.ts";
export {
  CertificateRotator,
  type CertificateRotatorOptions,
  type RotationClock,
  SYSTEM_CLOCK,
} from "./rotation.ts";
export {
  type IssueRequest,
  TrustChainHandler,
  type TrustChainHandlerOptions,
  TrustChainService,
  type TrustChainServiceOptions,
} from "./service/server.ts";
export {
  TrustChainClient,
  type TrustChainClientOptions,
  type TrustChainFetchRootOptions,
} from "./service/client.ts";
export { evidenceFromServices } from "./service/evidence.ts";
export { type ServiceInfo, TRUSTCHAIN_ALPN } from "./service/protocol.ts";
export {
  serveStaticCt,
  type ServeStaticCtOptions,
  staticCtHandler,
  type StaticCtOptions,
} from "./service/static_ct.ts";
export {
  connectWithFederation,
  type FederatedConnectOptions,
  federationVerifier,
  type FederationVerifierOptions,
  IdentityListener,
  type IdentityListenOptions,
  type IdentityRotationOptions,
  listenWithIdentity,
  peerChain,
  peerIdentity,
} from "./binding.ts";
export type {
  CaStore,
  CertificateRecord,
  Integration,
  LogEntryRecord,
  RevocationRecord,
  RevocationSeal,
  RevokeOutcome,
  SequencedIssuance,
  StoreCounts,
  StoredTreeHead,
  TreeState,
} from "./store/store.ts";
export type {
  CaIdentityRecord,
  IdentityComponent,
  IdentitySeal,
} from "./core/identity.ts";
export type { KeyWrapping } from "./core/key_wrap.ts";
export { MemoryCaStore } from "./store/memory.ts";
export { SqliteCaStore } from "./store/sqlite.ts";
export {
  PostgresCaStore,
  type PostgresCaStoreOptions,
} from "./store/postgres.ts";
export { openCaStore } from "./store/open.ts";
export { type LogAudit, StoredLog } from "./stored_log.ts";
