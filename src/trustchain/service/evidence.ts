/**
 * Federation evidence fetched from CA services, with a cache for proofs.
 *
 * @module
 */

import type { TransparencyProof } from "../core/ct_log.ts";
import type { PeerEvidenceSource } from "../core/federation.ts";
import type { TrustChainClient } from "./client.ts";

/**
 * A {@linkcode PeerEvidenceSource} backed by CA services: proofs and statuses are asked of the
 * service of the member that issued the certificate. Proofs are cached (a proof stays valid:
 * it proves inclusion in a signed tree head); statuses are fetched fresh each time.
 *
 * @param clients One client per federation member whose certificates should validate.
 * @returns The source, for `Federation.create(bundle, { source })`.
 *
 * @example Validating peers with evidence fetched over STOQ
 * ```ts
 * import { CertificateAuthority, Federation, MemoryCaStore } from "../mod.ts";
 * import { StoqEndpoint } from "../../transport/mod.ts";
 * import { TrustChainService } from "./server.ts";
 * import { TrustChainClient } from "./client.ts";
 * import { evidenceFromServices } from "./evidence.ts";
 * const ca = await CertificateAuthority.open({ name: "ca-1", store: new MemoryCaStore() });
 * const bundle = { version: 1, members: [ca.member] };
 * const trustBundle = { bundle, signatures: [await ca.endorse(bundle)] };
 * await using endpoint = new StoqEndpoint({ hostname: "::1" });
 * await using service = await TrustChainService.listen(endpoint, { ca, trustBundle });
 * await using client = await TrustChainClient.connect(endpoint, {
 *   hostname: "::1", port: service.addr.port, roots: [ca.rootPem],
 * });
 * const federation = await Federation.create((await client.bundle())!, {
 *   source: evidenceFromServices(client),
 * });
 * const peer = await ca.provision("peer");
 * console.log((await federation.verifyPeer({ chain: peer.chainDer })).member); // "ca-1"
 * ```
 */
export function evidenceFromServices(
  ...clients: TrustChainClient[]
): PeerEvidenceSource {
  const proofs = new Map<string, TransparencyProof>();
  const find = (member: string) => clients.find((c) => c.member === member);
  return {
    async proof(member, serial) {
      const key = `${member}\n${serial}`;
      const hit = proofs.get(key);
      if (hit) return hit;
      const proof = await find(member)?.proof(serial);
      if (proof) {
        if (proofs.size >= 10_000) proofs.clear();
        proofs.set(key, proof);
      }
      return proof;
    },
    async status(member, serial) {
      return await find(member)?.status(serial);
    },
  };
}
