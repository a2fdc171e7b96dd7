/**
 * Helpers shared by the TrustChain tests.
 *
 * @module
 */

import {
  CertificateAuthority,
  MemoryCaStore,
  type SignedTrustBundle,
  type TrustBundle,
} from "../src/trustchain/mod.ts";

/** Opens one in-memory CA per name. */
export function openCas(...names: string[]): Promise<CertificateAuthority[]> {
  return Promise.all(
    names.map((name) =>
      CertificateAuthority.open({ name, store: new MemoryCaStore() })
    ),
  );
}

/** `bundle` endorsed by each of `signers`. */
export async function signed(
  bundle: TrustBundle,
  signers: CertificateAuthority[],
): Promise<SignedTrustBundle> {
  return {
    bundle,
    signatures: await Promise.all(signers.map((c) => c.endorse(bundle))),
  };
}
