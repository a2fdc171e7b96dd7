// Property tests for every TrustChain parser that takes bytes from the network or from a file
// (issue 10): random and mutated inputs always give a StoqError or a valid result, never another
// exception, a hang or a change of state. 10,000 cases per parser; each test prints its time.
import "reflect-metadata";
import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import fc from "fast-check";
import { StoqError } from "../src/errors.ts";
import {
  CertificateAuthority,
  certificateLogLeaf,
  decodeSct,
  embeddedScts,
  encodeSct,
  Federation,
  MemoryCaStore,
  openNote,
  parseCheckpoint,
  parseTileLeaf,
  parseVkey,
  type SignedTrustBundle,
  statusMessage,
  trustBundleMessage,
  verifyStatus,
  verifyTransparencyProof,
} from "../src/trustchain/mod.ts";
import {
  decodeReply,
  decodeRequest,
  encodeRequest,
  METHODS,
  parseRequest,
} from "../src/trustchain/service/protocol.ts";
import {
  decodeIdentityRecord,
  verifyIdentitySeal,
} from "../src/trustchain/core/identity.ts";
import {
  decodeCertificateRow,
  decodeHeadRow,
  decodeRevocationRow,
  decodeSctText,
  decodeSealText,
  decodeTreeState,
  encodeSctText,
} from "../src/trustchain/store/records.ts";
import { equalBytes } from "../src/trustchain/core/_bytes.ts";

const RUNS = 10_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---- inputs: random bytes, and valid inputs with a few random mutations --------------------

type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "set"; at: number; value: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "delete"; at: number; length: number }
  | { kind: "truncate"; at: number }
  | { kind: "repeat"; at: number; length: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant("flip" as const),
    at: fc.nat(),
    bit: fc.integer({ min: 0, max: 7 }),
  }),
  fc.record({
    kind: fc.constant("set" as const),
    at: fc.nat(),
    value: fc.constantFrom(0, 0x7f, 0x80, 0xff, 0x22, 0x5c, 0x0a, 0x30),
  }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }),
  }),
  fc.record({
    kind: fc.constant("delete" as const),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 12 }),
  }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("repeat" as const),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 64 }),
  }),
);

function mutate(input: Uint8Array, mutations: Mutation[]): Uint8Array {
  let b = input;
  for (const m of mutations) {
    const at = m.at % (b.length + 1);
    const head = b.subarray(0, at);
    switch (m.kind) {
      case "flip":
      case "set": {
        if (b.length === 0) break;
        const i = m.at % b.length;
        b = b.slice();
        b[i] = m.kind === "flip" ? b[i] ^ (1 << m.bit) : m.value;
        break;
      }
      case "insert":
        b = new Uint8Array([...head, ...m.bytes, ...b.subarray(at)]);
        break;
      case "delete":
        b = new Uint8Array([...head, ...b.subarray(at + m.length)]);
        break;
      case "truncate":
        b = b.slice(0, at);
        break;
      case "repeat":
        b = new Uint8Array([
          ...head,
          ...b.subarray(at, at + m.length),
          ...b.subarray(at),
        ]);
        break;
    }
  }
  return b;
}

/** Random bytes, or one of `valid` (bytes) with 1–6 mutations. */
function bytesNear(valid: Uint8Array[], maxLength = 2048) {
  return fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength }) },
    {
      weight: 4,
      arbitrary: fc.tuple(
        fc.constantFrom(...valid),
        fc.array(mutation, { minLength: 1, maxLength: 6 }),
      ).map(([v, ms]) => mutate(v, ms)),
    },
  );
}

/** Random text, or one of `valid` (text) with mutations of its UTF-8. */
function textNear(valid: string[]) {
  return fc.oneof(
    { weight: 1, arbitrary: fc.string({ maxLength: 400 }) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 400 }) },
    {
      weight: 4,
      arbitrary: bytesNear(valid.map((v) => encoder.encode(v))).map((b) =>
        decoder.decode(b)
      ),
    },
  );
}

/** Random JSON values, or JSON `valid` values with mutated text (when it still parses). */
function jsonNear(valid: unknown[]) {
  return fc.oneof(
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
    {
      weight: 4,
      arbitrary: textNear(valid.map((v) => JSON.stringify(v))).map((t) => {
        try {
          return JSON.parse(t);
        } catch {
          return t;
        }
      }),
    },
  );
}

/** Fails unless `fn` returns, or throws a StoqError (with one of `codes`, when given). */
async function stoqErrorOr<T>(
  fn: () => T | Promise<T>,
  codes?: readonly string[],
): Promise<T | StoqError> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof StoqError)) {
      throw new Error(`not a StoqError: ${err}`, { cause: err });
    }
    if (codes && !codes.includes(err.code)) {
      throw new Error(`unexpected code ${err.code}: ${err.message}`);
    }
    return err;
  }
}

/** Runs a property for RUNS cases, each within `timeout` ms, and prints how long it took. */
async function check<T>(
  name: string,
  arbitrary: fc.Arbitrary<T>,
  predicate: (value: T) => Promise<void> | void,
): Promise<void> {
  const start = performance.now();
  let accepted = 0;
  await fc.assert(
    fc.asyncProperty(arbitrary, async (value) => {
      await predicate(value);
      accepted++;
    }),
    { numRuns: RUNS, timeout: 5_000 },
  );
  assert.equal(accepted, RUNS);
  console.log(
    `${name}: ${RUNS} cases in ${
      ((performance.now() - start) / 1000).toFixed(1)
    } s`,
  );
}

// ---- fixtures: a real CA and the valid inputs the mutations start from ---------------------

const ca = await CertificateAuthority.open({
  name: "prop-ca",
  store: new MemoryCaStore(),
});
const other = await CertificateAuthority.open({
  name: "prop-other",
  store: new MemoryCaStore(),
});
const issued = [await ca.provision("one"), await ca.provision("two")];
await ca.revoke(issued[1].serial, "superseded");
const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

async function validCsrs(): Promise<Uint8Array[]> {
  const p256 = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]);
  const ed = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]);
  const make = async (
    keys: CryptoKeyPair,
    alg: Algorithm | EcdsaParams,
    names: string[],
  ) =>
    new Uint8Array(
      (await x509.Pkcs10CertificateRequestGenerator.create({
        name: `CN=${names[0]}`,
        keys,
        signingAlgorithm: alg,
        extensions: [
          new x509.SubjectAlternativeNameExtension(
            names.map((value) => ({ type: "dns" as const, value })),
          ),
        ],
      })).rawData,
    );
  return [
    await make(p256 as CryptoKeyPair, EC, ["a.stoq.local"]),
    await make(p256 as CryptoKeyPair, EC, [
      "b.stoq.local",
      "c.stoq.local",
      "d.stoq.local",
    ]),
    await make(ed as CryptoKeyPair, { name: "Ed25519" }, ["e.stoq.local"]),
  ];
}

const CSR_CODES = [
  "CSR_TOO_LARGE",
  "CSR_MALFORMED",
  "TOO_MANY_SANS",
  "CSR_BAD_SIGNATURE",
  "KEY_UNSUPPORTED",
  "SAN_IPV4",
  "NAME_NOT_ALLOWED",
];

// ---- the parsers ---------------------------------------------------------------------------

Deno.test("service request decoder: any bytes give a checked request or REQUEST_INVALID", async () => {
  const valid = [
    encodeRequest("info", {}),
    encodeRequest("issue", {
      csr: "AAAA",
      lifetimeMs: 3600_000,
      token: "t",
    }),
    encodeRequest("status", { serial: "ab" }),
    encodeRequest("consistency", { first: 1, second: 2 }),
    encoder.encode(
      JSON.stringify({ method: "proof", serial: "x", extra: [1] }),
    ),
  ];
  await check("service request decoder", bytesNear(valid, 512), (bytes) => {
    let parsed;
    try {
      parsed = parseRequest(decodeRequest(bytes));
    } catch (err) {
      assert.ok(
        err instanceof StoqError && err.code === "REQUEST_INVALID",
        `${err}`,
      );
      return;
    }
    const spec: Record<string, string> = METHODS[parsed.method];
    assert.ok(spec);
    for (const [key, kind] of Object.entries(spec)) {
      const v = parsed.params[key];
      if (v === undefined && kind.endsWith("?")) continue;
      if (kind.startsWith("string")) {
        assert.ok(typeof v === "string" && v.length > 0);
      } else assert.ok(Number.isSafeInteger(v) && (v as number) >= 0);
    }
  });
});

Deno.test("service reply decoder: any bytes give a result or a StoqError", async () => {
  const valid = [
    encoder.encode(JSON.stringify({ ok: true, result: { a: 1 } })),
    encoder.encode(
      JSON.stringify({
        ok: false,
        error: { code: "UNAUTHORIZED", message: "no" },
      }),
    ),
  ];
  await check("service reply decoder", bytesNear(valid, 512), async (bytes) => {
    await stoqErrorOr(() => decodeReply(bytes));
  });
});

Deno.test("CSR intake: any request is issued or refused with a CSR code, and a refusal changes nothing", async () => {
  const csrs = await validCsrs();
  const pems = csrs.map((c) =>
    x509.PemConverter.encode(c.buffer as ArrayBuffer, "CERTIFICATE REQUEST")
  );
  const store = new MemoryCaStore();
  const intake = await CertificateAuthority.open({ name: "intake", store });
  let before = await store.counts();
  try {
    await check(
      "CSR intake",
      fc.oneof(bytesNear(csrs, 1024), textNear(pems)),
      async (csr) => {
        const out = await stoqErrorOr(() => intake.issue(csr), CSR_CODES);
        const after = await store.counts();
        if (out instanceof StoqError) {
          assert.deepEqual(after, before, `${out.code} changed the state`);
        } else {
          // Only a request whose signature still verifies is issued: one more entry, proven.
          assert.equal(after.entries, before.entries + 1);
          await verifyTransparencyProof(
            certificateLogLeaf(out.der, intake.rootDer),
            out.proof,
            intake.log.verifiers,
          );
        }
        before = after;
      },
    );
  } finally {
    await intake.close();
  }
});

Deno.test("checkpoint parsing: any note is a verified checkpoint of this log or PROOF_INVALID", async () => {
  const notes = [await ca.checkpoint(), ca.treeHead!, await other.checkpoint()];
  const bodies = new Set(notes.map((n) => n.slice(0, n.indexOf("\n\n") + 1)));
  await check("checkpoint parsing", textNear(notes), async (text) => {
    const opened = await stoqErrorOr(
      () => openNote(text, ca.log.verifiers),
      ["PROOF_INVALID"],
    );
    if (opened instanceof StoqError) return;
    // A note that verifies was signed: its body is one this log signed, and it parses.
    assert.ok(bodies.has(opened.body), "a forged note verified");
    const cp = parseCheckpoint(opened.body);
    assert.equal(cp.origin, ca.log.origin);
    assert.equal(cp.rootHash.length, 32);
  });
  await check("checkpoint bodies", textNear([...bodies]), async (text) => {
    const cp = await stoqErrorOr(() => parseCheckpoint(text), [
      "PROOF_INVALID",
    ]);
    if (cp instanceof StoqError) return;
    assert.ok(Number.isSafeInteger(cp.treeSize) && cp.rootHash.length === 32);
  });
});

Deno.test("vkey parsing: any text is a verifier whose key hash matches, or BUNDLE_INVALID", async () => {
  const vkeys = [ca.log.vkeys.log, ca.log.vkeys.falcon, other.log.vkeys.log];
  await check("vkey parsing", textNear(vkeys), async (text) => {
    const v = await stoqErrorOr(() => parseVkey(text), ["BUNDLE_INVALID"]);
    if (v instanceof StoqError) return;
    assert.equal(typeof v.name, "string");
    assert.equal(v.keyHash.length, 4);
  });
});

Deno.test("bundle parsing: any signed bundle is accepted only as signed, else BUNDLE_INVALID", async () => {
  const bundle = { version: 1, members: [ca.member, other.member] };
  const signed: SignedTrustBundle = {
    bundle,
    signatures: [await ca.endorse(bundle), await other.endorse(bundle)],
  };
  const message = trustBundleMessage(bundle);
  const fed = await Federation.create(signed);
  await check("bundle parsing", jsonNear([signed]), async (value) => {
    const out = await stoqErrorOr(
      () => Federation.create(value as SignedTrustBundle),
      ["BUNDLE_INVALID"],
    );
    if (!(out instanceof StoqError)) {
      assert.ok(equalBytes(trustBundleMessage(out.bundle), message));
    }
    // An update must be version 2: anything else is refused and the federation is unchanged.
    await stoqErrorOr(
      () => fed.update(value as SignedTrustBundle),
      ["BUNDLE_INVALID"],
    );
    assert.ok(equalBytes(trustBundleMessage(fed.bundle), message));
  });
});

Deno.test("peer certificates: any chain is verified or refused with a StoqError", async () => {
  const bundle = { version: 1, members: [ca.member] };
  const fed = await Federation.create({
    bundle,
    signatures: [await ca.endorse(bundle)],
  });
  const good = issued[0];
  await check(
    "peer certificate chains",
    fc.tuple(bytesNear([good.der, ca.rootDer]), jsonNear([good.proof])),
    async ([der, proof]) => {
      const out = await stoqErrorOr(
        () =>
          fed.verifyPeer({
            chain: [der],
            proof: proof as typeof good.proof,
          }),
        ["CERT_UNTRUSTED", "PROOF_INVALID", "CERT_REVOKED"],
      );
      if (!(out instanceof StoqError)) {
        assert.equal(out.serial, good.serial);
      }
    },
  );
});

Deno.test("transparency proofs and statuses from the network: verified or PROOF_INVALID/CERT_UNTRUSTED", async () => {
  const leaf = certificateLogLeaf(issued[0].der, ca.rootDer);
  const status = await ca.status(issued[1].serial);
  await check("transparency proofs", jsonNear([issued[0].proof]), async (p) => {
    await stoqErrorOr(
      // deno-lint-ignore no-explicit-any
      () => verifyTransparencyProof(leaf, p as any, ca.log.verifiers),
      ["PROOF_INVALID"],
    );
  });
  await check("signed statuses", jsonNear([status]), async (s) => {
    const ok = await stoqErrorOr(
      // deno-lint-ignore no-explicit-any
      () => verifyStatus(s as any, ca.rootDer),
    );
    if (ok === true) {
      // Extra fields are ignored; every signed one is the CA's.
      assert.ok(
        equalBytes(statusMessage(s as typeof status), statusMessage(status)),
      );
    }
  });
});

Deno.test("record decoding: log entries and SCTs, from the store or a data tile", async () => {
  const entries = await ca.logEntries(0, 2);
  await check("log entries (TileLeaf)", bytesNear(entries), async (bytes) => {
    const leaf = await stoqErrorOr(() => parseTileLeaf(bytes), ["MALFORMED"]);
    if (leaf instanceof StoqError) return;
    assert.ok(Number.isSafeInteger(leaf.leafIndex));
  });
  const scts = issued.map((i) => encodeSct(i.proof.sct));
  await check("SCTs", bytesNear(scts, 256), async (bytes) => {
    const sct = await stoqErrorOr(() => decodeSct(bytes), ["MALFORMED"]);
    if (sct instanceof StoqError) return;
    assert.ok(Number.isSafeInteger(sct.leafIndex));
  });
  await check(
    "SCT lists in certificates",
    bytesNear(issued.map((i) => i.der)),
    async (der) => {
      await stoqErrorOr(() => embeddedScts(der), ["MALFORMED"]);
    },
  );
});

Deno.test("record decoding: identity records are sealed, accepted only unchanged, else CA_TAMPERED", async () => {
  const store = new MemoryCaStore();
  const owner = await CertificateAuthority.open({ name: "sealed", store });
  const text = (await store.loadIdentity())!;
  await owner.close();
  await check("identity records", textNear([text]), async (t) => {
    const out = await stoqErrorOr(
      () => verifyIdentitySeal(decodeIdentityRecord(t)),
      ["CA_TAMPERED", "STORE_ERROR"],
    );
    if (!(out instanceof StoqError)) {
      // Only JSON-level changes (spacing, key order) keep every sealed field.
      assert.deepEqual(
        decodeIdentityRecord(t),
        decodeIdentityRecord(text),
      );
    }
  });
});

Deno.test("record decoding: store rows are decoded or refused with CA_TAMPERED/LOG_TAMPERED", async () => {
  const cert = {
    serial: issued[0].serial,
    leaf_index: 0,
    not_after: 1_900_000_000_000,
    sct: encodeSctText(issued[0].proof.sct),
    mac: new Uint8Array(32),
  };
  const TAMPERED = ["CA_TAMPERED", "LOG_TAMPERED"];
  const field = fc.oneof(
    fc.jsonValue(),
    fc.uint8Array({ maxLength: 96 }),
    fc.bigInt(),
    textNear([cert.sct, "0", "123", "ab"]),
  );
  await check(
    "certificate rows",
    fc.record({
      serial: fc.oneof(fc.constant(cert.serial), field),
      leaf_index: fc.oneof(fc.constant(0), field),
      not_after: fc.oneof(fc.constant(cert.not_after), field),
      sct: fc.oneof(textNear([cert.sct]), field),
      mac: fc.oneof(fc.constant(cert.mac), field),
    }),
    async (row) => {
      await stoqErrorOr(() => decodeCertificateRow(row), TAMPERED);
    },
  );
  await check("SCT text", textNear([cert.sct]), async (t) => {
    await stoqErrorOr(() => decodeSctText(t, "sct"), TAMPERED);
  });
  const seal = JSON.stringify({
    count: 1,
    chain: btoa("x".repeat(32)),
    signature: btoa("y".repeat(64)),
  });
  await check("revocation seals", textNear([seal]), async (t) => {
    await stoqErrorOr(() => decodeSealText(t), TAMPERED);
  });
  await check(
    "tree state, head and revocation rows",
    fc.record({
      size: fc.oneof(fc.nat({ max: 70 }), field),
      hashes: fc.oneof(bytesNear([new Uint8Array(64)], 200), field),
      mac: fc.oneof(fc.uint8Array({ maxLength: 40 }), field),
      tree_size: fc.oneof(fc.nat(), field),
      note: fc.oneof(textNear([ca.treeHead!]), field),
      serial: field,
      reason: field,
      revoked_at: field,
    }),
    async (row) => {
      const state = await stoqErrorOr(() => decodeTreeState(row), TAMPERED);
      if (!(state instanceof StoqError)) {
        assert.ok(state.range.hashes.every((h) => h.length === 32));
      }
      await stoqErrorOr(() => decodeHeadRow(row), TAMPERED);
      await stoqErrorOr(() => decodeRevocationRow(row), TAMPERED);
    },
  );
});

Deno.test({
  name: "property fixtures close",
  fn: async () => {
    await ca.close();
    await other.close();
  },
});
