/**
 * Migration of a CA database written by the previous TrustChain (identity format 2: keys in the
 * clear and unsealed, rows without MACs, no stored tree) to the current format. The legacy log is
 * verified first as that release verified it at every open (each tree head's signature and root,
 * each entry against its certificate record); then the identity is sealed (and its keys wrapped
 * when a passphrase or key file is given), the rows MACed, the tree stored and the revocations
 * chained, in one store transaction. Keys, certificates, SCTs and tree heads stay the same.
 *
 * @module
 */

import { sha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { StoqError } from "../errors.ts";
import { entryIsCertificate, logTampered } from "./core/audit.ts";
import { openNote, parseCheckpoint } from "./core/checkpoint.ts";
import { integrateEntries, LogSigner } from "./core/ct_log.ts";
import { p256Signer } from "./core/ecdsa.ts";
import {
  encodeIdentityRecord,
  type IdentityKeys,
  sealIdentity,
} from "./core/identity.ts";
import {
  certificateMac,
  chainRevocation,
  EMPTY_CHAIN,
  entryMac,
  revocationSealMessage,
  stateMac,
  storeMacKey,
} from "./core/integrity.ts";
import type { KeySecret } from "./core/key_wrap.ts";
import { appendLeaves, compactRangeRoot } from "./core/merkle.ts";
import type { RandomSource } from "./core/random.ts";
import * as der from "./core/_der.ts";
import { equalBytes, toBase64 } from "./core/_bytes.ts";
import {
  completeSqliteMigration,
  readLegacySqlite,
  SqliteCaStore,
} from "./store/sqlite.ts";
import type { CaStore } from "./store/store.ts";

/**
 * Migrates a store holding a format 2 CA.
 *
 * @param store The store.
 * @param keys The identity's keys, read from its format 2 record.
 * @param random Hedging, salt and IV bytes.
 * @param secret A passphrase or key file to wrap the keys with.
 * @returns The new identity record (JSON), as stored.
 * @throws {StoqError} `LOG_TAMPERED` when the legacy log does not verify; `STORE_ERROR` when the
 * store cannot be migrated.
 */
export async function migrateLegacyStore(
  store: CaStore,
  keys: IdentityKeys,
  random: RandomSource,
  secret?: KeySecret,
): Promise<string> {
  const legacy = store instanceof SqliteCaStore
    ? await readLegacySqlite(store)
    : undefined;
  if (!legacy || !(store instanceof SqliteCaStore)) {
    throw new StoqError(
      "STORE_ERROR",
      `This store holds CA ${keys.name} in identity format 2 but not the tables of that format: restore it from a backup`,
    );
  }
  const { entries, certificates, heads, revocations } = legacy;
  // Verify the legacy log as the release that wrote it did at every open.
  using signer = new LogSigner(keys.origin, keys.logKeys, { random });
  let built;
  try {
    built = integrateEntries({ size: 0, hashes: [] }, entries);
  } catch (cause) {
    throw logTampered("a legacy log entry is malformed or misplaced", cause);
  }
  const rootAt = new Map<number, Uint8Array>();
  {
    // Roots at each head's size, from the level-0 hashes the integration produced.
    let range = { size: 0, hashes: [] as Uint8Array[] };
    const sizes = new Set(heads.map((h) => h.size));
    const leaves = built.nodes.filter((n) => n.level === 0);
    for (const leaf of leaves) {
      range = appendLeaves(range, [leaf.hash]).range;
      if (sizes.has(range.size)) {
        rootAt.set(range.size, compactRangeRoot(range));
      }
    }
  }
  for (const head of heads) {
    let cp;
    try {
      cp = parseCheckpoint((await openNote(head.note, signer.verifiers)).body);
    } catch (cause) {
      throw logTampered("a legacy tree head does not verify", cause);
    }
    const root = rootAt.get(head.size);
    if (cp.treeSize !== head.size || !root || !equalBytes(root, cp.rootHash)) {
      throw logTampered(
        `the legacy tree head of size ${head.size} does not match the entries`,
      );
    }
  }
  if ((heads.at(-1)?.size ?? 0) !== entries.length) {
    throw logTampered("the legacy log's last tree head does not cover it");
  }
  const issuerKeyHash = sha256(der.certificateParts(keys.rootDer).spki);
  const issuerFingerprint = sha256(keys.rootDer);
  if (
    certificates.length !== entries.length ||
    !certificates.every((c, i) =>
      c.leafIndex === i &&
      entryIsCertificate(entries[i], c.serial, issuerKeyHash, issuerFingerprint)
    )
  ) {
    throw logTampered("a legacy log entry is not its certificate's");
  }
  // The current format's records, under the same keys.
  const record = await sealIdentity(keys, random, secret);
  const macKey = storeMacKey(keys.logKeys.privateKey);
  const root = p256Signer(keys.rootPkcs8, random);
  let chain = EMPTY_CHAIN;
  for (const r of revocations) chain = chainRevocation(chain, r);
  const identity = encodeIdentityRecord(record);
  await completeSqliteMigration(store, {
    identity,
    entryMacs: entries.map((e, i) => entryMac(macKey, i, e)),
    certificateMacs: certificates.map((c) => ({
      serial: c.serial,
      mac: certificateMac(macKey, c),
    })),
    revocations,
    seal: revocations.length === 0 ? undefined : {
      count: revocations.length,
      chain: toBase64(chain),
      signature: toBase64(
        root.sign(revocationSealMessage(keys.name, revocations.length, chain)),
      ),
    },
    nodes: built.nodes,
    state: { range: built.range, mac: stateMac(macKey, built.range) },
  });
  return identity;
}
