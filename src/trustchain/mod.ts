/**
 * TrustChain: STOQ's certificate authority, transparency log and federation.
 *
 * - {@linkcode CertificateAuthority}: ECDSA P-256 root issuing short-lived leaves from CSRs under a
 *   strict policy; `provision()` gives an app `{ cert, key }` plus its transparency proof.
 * - {@linkcode TransparencyLog}: RFC 9162 Merkle log, C2SP checkpoints with Falcon-512 co-signature.
 * - {@linkcode SqliteCaStore}: one SQLite file per CA, one transaction per issuance.
 * - {@linkcode Federation}: signed trust bundle and `verifyPeer` for the transport.
 * - {@linkcode CertificateRotator}: renews an identity at two thirds of its lifetime.
 * - On STOQ: {@linkcode listenWithIdentity} serves a self-renewing identity (optionally requiring
 *   federation client certificates), {@linkcode connectWithFederation} validates servers against
 *   the federation and their transparency proofs, {@linkcode peerIdentity} says who a peer is.
 * - {@linkcode TrustChainService} serves a CA over STOQ (ALPN `trustchain/1`: issuance, status,
 *   proofs, bundle, tree heads); {@linkcode TrustChainClient} provisions apps remotely and
 *   {@linkcode evidenceFromServices} feeds a federation proofs fetched from the services.
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
  CertificateAuthority,
  type CertificateAuthorityOptions,
  evidenceSource,
  type IssuedCertificate,
  type IssueOptions,
  nameAllowed,
  type ProvisionedIdentity,
} from "./ca.ts";
export {
  generateLogKeys,
  type LogKeys,
  type Sct,
  TransparencyLog,
  type TransparencyProof,
  verifySct,
  verifyTransparencyProof,
} from "./ct_log.ts";
export {
  type Checkpoint,
  ED25519_NOTE_TYPE,
  ed25519NoteSigner,
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
  signNote,
} from "./checkpoint.ts";
export {
  FALCON_COSIGNATURE_OID,
  type FalconCertificateFields,
  falconCertificateMessage,
  type FalconKeyPair,
  falconSign,
  falconVerify,
  generateFalconKeyPair,
  verifyCertificateFalcon,
} from "./falcon.ts";
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
} from "./federation.ts";
export {
  leafHash,
  MerkleTree,
  nodeHash,
  verifyConsistency,
  verifyInclusion,
} from "./merkle.ts";
export {
  CertificateRotator,
  type CertificateRotatorOptions,
  type RotationClock,
  SYSTEM_CLOCK,
} from "./rotation.ts";
export {
  evidenceFromServices,
  type IssueRequest,
  type ServiceInfo,
  TRUSTCHAIN_ALPN,
  TrustChainClient,
  type TrustChainClientOptions,
  TrustChainService,
  type TrustChainServiceOptions,
} from "./service.ts";
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
} from "./stoq.ts";
export {
  canonicalSerial,
  type RevocationReason,
  type SignedStatus,
  statusMessage,
  verifyStatus,
} from "./status.ts";
export {
  type CaIdentityRecord,
  type CaStore,
  type CertificateRecord,
  MemoryCaStore,
  type RevocationRecord,
  SqliteCaStore,
  type StoreCounts,
} from "./store.ts";
