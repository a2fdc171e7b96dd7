import assert from "node:assert/strict";
import { StoqError, type StoqErrorCode } from "../src/errors.ts";
import { evidenceSource, Federation } from "../src/trustchain/mod.ts";
import { openCas, signed } from "./_trustchain.ts";

const isCode = (code: StoqErrorCode) => (e: unknown) =>
  e instanceof StoqError && e.code === code;

Deno.test("a member's certificate validates with a proof sent along or looked up", async () => {
  const [a, b, c] = await openCas("a", "b", "c");
  const v1 = { version: 1, members: [a.member, b.member, c.member] };
  const fed = await Federation.create(await signed(v1, [a, b, c]), {
    source: evidenceSource(a, b, c),
  });
  const id = await b.provision("svc");
  const peer = await fed.verifyPeer({ chain: id.chainDer, proof: id.proof });
  assert.equal(peer.member, "b");
  assert.deepEqual(peer.names, ["svc.stoq.local"]);
  // Without a proof in hand, the source supplies the proof and a fresh signed status.
  assert.equal(
    (await fed.verifyPeer({ chain: id.chainDer })).serial,
    id.serial,
  );
  // A later proof against a bigger tree also works.
  await b.provision("other");
  assert.equal(
    (await fed.verifyPeer({
      chain: [id.der],
      proof: (await b.proof(id.serial))!,
    })).member,
    "b",
  );
});

Deno.test("a removed member's certificates stop validating after a signed update", async () => {
  const [a, b, c] = await openCas("a", "b", "c");
  const fed = await Federation.create(
    await signed({ version: 1, members: [a.member, b.member, c.member] }, [
      a,
      b,
      c,
    ]),
  );
  const id = await c.provision("svc");
  await fed.verifyPeer({ chain: id.chainDer, proof: id.proof });
  await fed.update(
    await signed({ version: 2, members: [a.member, b.member] }, [a, b]),
  );
  assert.equal(fed.bundle.version, 2);
  await assert.rejects(
    fed.verifyPeer({ chain: id.chainDer, proof: id.proof }),
    isCode("CERT_UNTRUSTED"),
  );
  // Members still in the bundle keep validating.
  const ok = await a.provision("svc");
  await fed.verifyPeer({ chain: ok.chainDer, proof: ok.proof });
});

Deno.test("unsigned, minority-signed, badly signed or misnumbered updates are refused", async () => {
  const [a, b, c, d] = await openCas("a", "b", "c", "d");
  const fed = await Federation.create(
    await signed({ version: 1, members: [a.member, b.member, c.member] }, [
      a,
      b,
      c,
    ]),
  );
  const v2 = { version: 2, members: [a.member, b.member, c.member, d.member] };
  await assert.rejects(
    fed.update({ bundle: v2, signatures: [] }),
    isCode("BUNDLE_INVALID"),
  );
  await assert.rejects(
    fed.update(await signed(v2, [a])),
    isCode("BUNDLE_INVALID"),
  );
  // A non-member (d) cannot make up the quorum.
  await assert.rejects(
    fed.update(await signed(v2, [a, d])),
    isCode("BUNDLE_INVALID"),
  );
  const forged = await signed(v2, [a, b]);
  forged.signatures[1] = {
    member: "b",
    signature: (await c.endorse(v2)).signature,
  };
  await assert.rejects(fed.update(forged), isCode("BUNDLE_INVALID"));
  // Signatures over a different bundle do not carry over.
  const other = await signed({ version: 2, members: [a.member] }, [a, b]);
  await assert.rejects(
    fed.update({ bundle: v2, signatures: other.signatures }),
    isCode("BUNDLE_INVALID"),
  );
  await assert.rejects(
    fed.update(await signed({ ...v2, version: 3 }, [a, b, c])),
    isCode("BUNDLE_INVALID"),
  );
  assert.equal(fed.bundle.version, 1);
  await fed.update(await signed(v2, [a, b]));
  assert.equal(fed.bundle.members.length, 4);
  // A genesis bundle missing a member's signature is refused too.
  await assert.rejects(
    Federation.create(
      await signed({ version: 1, members: [a.member, b.member] }, [a]),
    ),
    isCode("BUNDLE_INVALID"),
  );
});

Deno.test("a revoked certificate is rejected with CERT_REVOKED", async () => {
  const [a] = await openCas("a");
  const fed = await Federation.create(
    await signed({ version: 1, members: [a.member] }, [a]),
    {
      source: evidenceSource(a),
    },
  );
  const id = await a.provision("svc");
  await fed.verifyPeer({ chain: id.chainDer });
  await a.revoke(id.serial, "keyCompromise");
  await assert.rejects(
    fed.verifyPeer({ chain: id.chainDer }),
    isCode("CERT_REVOKED"),
  );
  // A stapled status is checked the same way.
  await assert.rejects(
    fed.verifyPeer({
      chain: id.chainDer,
      proof: id.proof,
      status: await a.status(id.serial),
    }),
    isCode("CERT_REVOKED"),
  );
});

Deno.test("missing, foreign or altered transparency proofs are rejected with PROOF_INVALID", async () => {
  const [a, b] = await openCas("a", "b");
  const fed = await Federation.create(
    await signed({ version: 1, members: [a.member, b.member] }, [a, b]),
  );
  const id = await a.provision("svc");
  const other = await b.provision("svc");
  await assert.rejects(
    fed.verifyPeer({ chain: id.chainDer }),
    isCode("PROOF_INVALID"),
  );
  await assert.rejects(
    fed.verifyPeer({ chain: id.chainDer, proof: other.proof }),
    isCode("PROOF_INVALID"),
  );
  const badPath = { ...id.proof, leafIndex: id.proof.leafIndex + 1 };
  await assert.rejects(
    fed.verifyPeer({ chain: id.chainDer, proof: badPath }),
    isCode("PROOF_INVALID"),
  );
  const head = id.proof.treeHead.replace(
    /\n(\d+)\n/,
    (_, n) => `\n${Number(n) + 1}\n`,
  );
  await assert.rejects(
    fed.verifyPeer({
      chain: id.chainDer,
      proof: { ...id.proof, treeHead: head },
    }),
    isCode("PROOF_INVALID"),
  );
});

Deno.test("expired, unparsable or unknown-issuer certificates are CERT_UNTRUSTED", async () => {
  const [a, outsider] = await openCas("a", "x");
  const fed = await Federation.create(
    await signed({ version: 1, members: [a.member] }, [a]),
  );
  const id = await a.provision("svc");
  const later = new Date(id.notAfter.getTime() + 1000);
  await assert.rejects(
    fed.verifyPeer({ chain: id.chainDer, proof: id.proof, now: later }),
    isCode("CERT_UNTRUSTED"),
  );
  await assert.rejects(
    fed.verifyPeer({ chain: [new Uint8Array([1, 2, 3])] }),
    isCode("CERT_UNTRUSTED"),
  );
  const foreign = await outsider.provision("svc");
  await assert.rejects(
    fed.verifyPeer({ chain: foreign.chainDer, proof: foreign.proof }),
    isCode("CERT_UNTRUSTED"),
  );
});

Deno.test("a certificate without an SCT from its member's log is rejected with PROOF_INVALID", async () => {
  const [a, b] = await openCas("a", "b");
  // Member a as a bundle might list it by mistake or malice: a's root, b's log.
  const crossed = {
    ...a.member,
    origin: b.member.origin,
    logKey: b.member.logKey,
  };
  const fed = await Federation.create(
    await signed({ version: 1, members: [crossed] }, [a]),
  );
  const id = await a.provision("svc");
  await assert.rejects(
    fed.verifyPeer({ chain: id.chainDer, proof: id.proof }),
    (e: unknown) =>
      isCode("PROOF_INVALID")(e) && /no SCT from a's log/.test(String(e)),
  );
  // With a's own log it validates, so the refusal above was about the log.
  const right = await Federation.create(
    await signed({ version: 1, members: [a.member] }, [a]),
  );
  await right.verifyPeer({ chain: id.chainDer, proof: id.proof });
});
