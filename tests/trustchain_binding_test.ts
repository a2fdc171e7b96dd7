// TrustChain over real STOQ connections on ::1: identities, rotation, federation validation,
// mutual TLS and the CA service.
import assert from "node:assert/strict";
import { StoqError, type StoqErrorCode } from "../src/errors.ts";
import { type StoqConnection, StoqEndpoint } from "../src/transport/mod.ts";
import {
  connectWithFederation,
  evidenceFromServices,
  evidenceSource,
  Federation,
  type IdentityListener,
  listenWithIdentity,
  peerIdentity,
  type ProvisionedIdentity,
  type RotationClock,
  TRUSTCHAIN_ALPN,
  TrustChainClient,
  TrustChainService,
} from "../src/trustchain/mod.ts";
import { openCas, signed } from "./_trustchain.ts";

const ALPN = "tc-echo";

const isCode = (code: StoqErrorCode) => (e: unknown) => {
  assert.ok(e instanceof StoqError, `expected a StoqError, got ${e}`);
  assert.equal(e.code, code, e.message);
  return true;
};

/** Echoes every stream of every accepted connection; records the connections. */
function serveEcho(
  server: AsyncIterable<StoqConnection>,
  accepted: StoqConnection[] = [],
): Promise<void> {
  return (async () => {
    const tasks: Promise<void>[] = [];
    for await (const conn of server) {
      accepted.push(conn);
      tasks.push((async () => {
        try {
          for await (const s of conn.incomingBidirectionalStreams) {
            tasks.push(s.readable.pipeTo(s.writable).catch(() => {}));
          }
        } catch { /* connection ended */ }
      })());
    }
    await Promise.allSettled(tasks);
  })();
}

async function echo(conn: StoqConnection, text: string): Promise<string> {
  const { readable, writable } = await conn.createBidirectionalStream();
  const w = writable.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  return await new Response(readable).text();
}

/** A clock whose timers fire only when the test says so. */
class ManualClock implements RotationClock {
  #now = Date.now();
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now(): Date {
    return new Date(this.#now);
  }
  setTimeout(fn: () => void, ms: number): number {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + ms, fn });
    return id;
  }
  clearTimeout(id: number): void {
    this.#timers.delete(id);
  }
  /** Moves time to `at` and fires the timers that are due. */
  advanceTo(at: number): void {
    this.#now = at;
    for (const [id, t] of [...this.#timers]) {
      if (t.at <= at) {
        this.#timers.delete(id);
        t.fn();
      }
    }
  }
}

/** Waits for a connection to end and says how. */
async function ending(conn: StoqConnection): Promise<StoqErrorCode | "ok"> {
  try {
    await conn.closed;
    return "ok";
  } catch (e) {
    return (e as StoqError).code;
  }
}

/** Connects and reports how the attempt ended: `connected` or the error code. */
async function attempt(
  p: Promise<StoqConnection>,
): Promise<StoqErrorCode | StoqConnection> {
  try {
    return await p;
  } catch (e) {
    assert.ok(e instanceof StoqError, String(e));
    return e.code;
  }
}

Deno.test("rotation keeps a live STOQ connection and gives new connections the new certificate", async () => {
  const [ca] = await openCas("rot");
  const bundle = { version: 1, members: [ca.member] };
  const federation = await Federation.create(await signed(bundle, [ca]), {
    source: evidenceSource(ca),
  });
  const server = new StoqEndpoint({ hostname: "::1" });
  const client = new StoqEndpoint({ hostname: "::1" });
  const clock = new ManualClock();
  const renewed: ProvisionedIdentity[] = [];
  let identity: IdentityListener | undefined;
  try {
    const renewal = Promise.withResolvers<ProvisionedIdentity>();
    identity = await listenWithIdentity(server, {
      alpnProtocols: [ALPN],
      provision: () => ca.provision("svc"),
      rotation: { clock },
      onRenew: (id) => {
        renewed.push(id);
        if (renewed.length === 2) renewal.resolve(id);
      },
    });
    const serving = serveEcho(identity);
    const first = identity.identity;
    const connect = () =>
      connectWithFederation(client, {
        hostname: "::1",
        port: identity!.addr.port,
        alpnProtocols: [ALPN],
        serverName: "svc.stoq.local",
        federation,
      });

    const live = await connect();
    assert.equal(peerIdentity(live)?.serial, first.serial);
    assert.equal(await echo(live, "before"), "before");

    // The rotator's timer comes due: it provisions and hands the listener the new certificate.
    clock.advanceTo(identity.renewsAt!.getTime() + 1);
    const second = await renewal.promise;
    assert.notEqual(second.serial, first.serial);
    assert.equal(identity.identity.serial, second.serial);

    assert.equal(await echo(live, "after rotation"), "after rotation");
    assert.equal(peerIdentity(live)?.serial, first.serial);

    const fresh = await connect();
    assert.equal(peerIdentity(fresh)?.serial, second.serial);
    assert.equal(await echo(fresh, "new"), "new");
    assert.equal(await echo(live, "still"), "still");

    // A manual renewal goes the same way.
    const third = await identity.renew();
    const newest = await connect();
    assert.equal(peerIdentity(newest)?.serial, third.serial);
    assert.equal(await echo(live, "and still"), "and still");

    identity.close();
    await client.close();
    await server.close();
    await serving;
  } finally {
    identity?.close();
    await client.close();
    await server.close();
    await ca.close();
  }
});

Deno.test("a STOQ client rejects a removed member's certificate and accepts a current member's", async () => {
  const [a, b, c] = await openCas("a", "b", "c");
  const v1 = { version: 1, members: [a.member, b.member, c.member] };
  const rejected: StoqError[] = [];
  const federation = await Federation.create(await signed(v1, [a, b, c]), {
    source: evidenceSource(a, b, c),
  });
  const servers = [
    new StoqEndpoint({ hostname: "::1" }),
    new StoqEndpoint({ hostname: "::1" }),
  ];
  const client = new StoqEndpoint({ hostname: "::1" });
  const listeners: IdentityListener[] = [];
  try {
    for (const [i, ca] of [a, c].entries()) {
      listeners.push(
        await listenWithIdentity(servers[i], {
          alpnProtocols: [ALPN],
          provision: () => ca.provision("svc"),
          rotation: false,
        }),
      );
    }
    const serving = listeners.map((l) => serveEcho(l));
    const connect = (l: IdentityListener) =>
      connectWithFederation(client, {
        hostname: "::1",
        port: l.addr.port,
        alpnProtocols: [ALPN],
        serverName: "svc.stoq.local",
        federation,
        onRejected: (e) => rejected.push(e),
      });

    // While c is a member, its certificate validates.
    const before = await connect(listeners[1]);
    assert.equal(peerIdentity(before)?.member, "c");
    assert.equal(await echo(before, "c ok"), "c ok");
    before.close();

    const v2 = { version: 2, members: [a.member, b.member] };
    await federation.update(await signed(v2, [a, b]));

    await assert.rejects(connect(listeners[1]), isCode("CERTIFICATE_REJECTED"));
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0].code, "CERT_UNTRUSTED");

    const current = await connect(listeners[0]);
    assert.equal(peerIdentity(current)?.member, "a");
    assert.equal(await echo(current, "a ok"), "a ok");

    // A name other than the one asked for is refused too.
    await assert.rejects(
      connectWithFederation(client, {
        hostname: "::1",
        port: listeners[0].addr.port,
        alpnProtocols: [ALPN],
        serverName: "other.stoq.local",
        federation,
      }),
      isCode("CERTIFICATE_REJECTED"),
    );

    for (const l of listeners) l.close();
    await client.close();
    for (const s of servers) await s.close();
    await Promise.all(serving);
  } finally {
    for (const l of listeners) l.close();
    await client.close();
    for (const s of servers) await s.close();
    for (const ca of [a, b, c]) await ca.close();
  }
});

Deno.test("mutual TLS accepts federation client certificates and refuses unknown ones", async () => {
  const [a, b, outsider] = await openCas("a", "b", "outsider");
  const v1 = { version: 1, members: [a.member, b.member] };
  const federation = await Federation.create(await signed(v1, [a, b]), {
    source: evidenceSource(a, b),
  });
  const server = new StoqEndpoint({ hostname: "::1" });
  const client = new StoqEndpoint({ hostname: "::1" });
  const refusals: StoqError[] = [];
  let listener: IdentityListener | undefined;
  try {
    listener = await listenWithIdentity(server, {
      alpnProtocols: [ALPN],
      provision: () => a.provision("svc"),
      federation,
      rotation: false,
      onRejected: (e) => refusals.push(e),
    });
    const accepted: StoqConnection[] = [];
    const serving = serveEcho(listener, accepted);
    const connect = (identity?: ProvisionedIdentity) =>
      connectWithFederation(client, {
        hostname: "::1",
        port: listener!.addr.port,
        alpnProtocols: [ALPN],
        serverName: "svc.stoq.local",
        federation,
        identity,
      });

    const member = await connect(await b.provision("worker"));
    assert.equal(await echo(member, "hello"), "hello");
    assert.equal(accepted.length, 1);
    const seen = peerIdentity(accepted[0]);
    assert.equal(seen?.member, "b");
    assert.deepEqual(seen?.names, ["worker.stoq.local"]);

    // TLS 1.3: the client may finish its handshake before the server refuses its certificate;
    // either way the connection ends with CERTIFICATE_REJECTED and is never accepted.
    for (const identity of [await outsider.provision("worker"), undefined]) {
      const r = await attempt(connect(identity));
      const code = typeof r === "string" ? r : await ending(r);
      assert.equal(code, "CERTIFICATE_REJECTED");
    }
    // The outsider's certificate reached the federation check; a client with no certificate is
    // refused by the transport itself (TLS certificate_required) before any check runs.
    assert.equal(refusals.length, 1);
    assert.ok(refusals.every((e) => e.code === "CERT_UNTRUSTED"));

    const again = await connect(await a.provision("worker-2"));
    assert.equal(await echo(again, "again"), "again");
    assert.deepEqual(
      accepted.map((c) => peerIdentity(c)?.names[0]),
      ["worker.stoq.local", "worker-2.stoq.local"],
    );

    listener.close();
    await client.close();
    await server.close();
    await serving;
  } finally {
    listener?.close();
    await client.close();
    await server.close();
    for (const ca of [a, b, outsider]) await ca.close();
  }
});

Deno.test("the CA service provisions a remote app end to end over STOQ", async () => {
  const [ca] = await openCas("ca-1");
  const genesis = await signed({ version: 1, members: [ca.member] }, [ca]);
  const caNode = new StoqEndpoint({ hostname: "::1" });
  const appNode = new StoqEndpoint({ hostname: "::1" });
  const userNode = new StoqEndpoint({ hostname: "::1" });
  const asked: string[][] = [];
  let app: IdentityListener | undefined;
  const closers: (() => Promise<void>)[] = [];
  try {
    const service = await TrustChainService.listen(caNode, {
      ca,
      trustBundle: genesis,
      authorize: ({ token, names }) => {
        asked.push(names);
        return token === "enrol-me";
      },
    });
    closers.push(() => service.close());
    const port = service.addr.port;

    // The app's machine: provisions through the service, key generated locally.
    const appClient = await TrustChainClient.connect(appNode, {
      hostname: "::1",
      port,
      roots: [ca.rootPem],
      token: "enrol-me",
    });
    closers.push(() => appClient.close());
    assert.equal(appClient.member, "ca-1");
    app = await listenWithIdentity(appNode, {
      alpnProtocols: [ALPN],
      provision: () => appClient.provision("remote-app"),
    });
    const serving = serveEcho(app);
    const issued = app.identity;
    assert.deepEqual(issued.names, ["remote-app.stoq.local"]);
    assert.deepEqual(asked, [["remote-app.stoq.local"]]);

    // A user of the app: federation from the service's bundle, evidence from the service.
    const userClient = await TrustChainClient.connect(userNode, {
      hostname: "::1",
      port,
      roots: [ca.rootPem],
    });
    closers.push(() => userClient.close());
    const bundle = await userClient.bundle();
    assert.ok(bundle);
    const federation = await Federation.create(bundle, {
      source: evidenceFromServices(userClient),
    });
    const conn = await connectWithFederation(userNode, {
      hostname: "::1",
      port: app.addr.port,
      alpnProtocols: [ALPN],
      serverName: "remote-app.stoq.local",
      federation,
    });
    assert.equal(peerIdentity(conn)?.serial, issued.serial);
    assert.equal(await echo(conn, "provisioned"), "provisioned");

    // The rest of the service answers too.
    assert.equal((await userClient.status(issued.serial)).status, "good");
    assert.equal(
      (await userClient.proof(issued.serial))?.leafIndex,
      issued.proof.leafIndex,
    );
    assert.equal(await userClient.proof("abcdef"), undefined);
    assert.match(await userClient.checkpoint(), /^stoq\.trustchain\/ca-1\n/);
    assert.ok(
      (await userClient.treeHead())?.startsWith("stoq.trustchain/ca-1\n"),
    );
    assert.ok(Array.isArray(await userClient.consistencyProof(1)));
    assert.match(await userClient.revocationList(), /BEGIN X509 CRL/);

    // Revocation reaches the federation through the service.
    await ca.revoke(issued.serial, "keyCompromise");
    await assert.rejects(
      connectWithFederation(userNode, {
        hostname: "::1",
        port: app.addr.port,
        alpnProtocols: [ALPN],
        serverName: "remote-app.stoq.local",
        federation,
      }),
      isCode("CERTIFICATE_REJECTED"),
    );
    // The app renews and is served again.
    const renewed = await app.renew();
    const after = await connectWithFederation(userNode, {
      hostname: "::1",
      port: app.addr.port,
      alpnProtocols: [ALPN],
      serverName: "remote-app.stoq.local",
      federation,
    });
    assert.equal(peerIdentity(after)?.serial, renewed.serial);

    app.close();
    await appNode.close();
    await serving;
  } finally {
    app?.close();
    for (const close of closers.reverse()) await close();
    await userNode.close();
    await appNode.close();
    await caNode.close();
    await ca.close();
  }
});

Deno.test("the CA service answers bad requests with clear error codes", async () => {
  const [ca, other] = await openCas("ca-2", "other");
  const caNode = new StoqEndpoint({ hostname: "::1" });
  const node = new StoqEndpoint({ hostname: "::1" });
  const closers: (() => Promise<void>)[] = [];
  try {
    const service = await TrustChainService.listen(caNode, {
      ca,
      maxRequestBytes: 4096,
      authorize: ({ token }) => token === "ok",
    });
    closers.push(() => service.close());
    const port = service.addr.port;

    /** Sends raw bytes as one request and parses the answer. */
    const raw = async (bytes: Uint8Array) => {
      const conn = await node.connect({
        hostname: "::1",
        port,
        alpnProtocols: [TRUSTCHAIN_ALPN],
        verifyPeer: () => true,
      });
      try {
        const { readable, writable } = await conn.createBidirectionalStream();
        const w = writable.getWriter();
        await w.write(bytes).catch(() => {});
        await w.close().catch(() => {});
        return JSON.parse(await new Response(readable).text());
      } finally {
        conn.close();
        await conn.finished;
      }
    };
    const text = (s: string) => new TextEncoder().encode(s);
    assert.equal((await raw(text("not json"))).error.code, "REQUEST_INVALID");
    assert.equal((await raw(text("[1]"))).error.code, "REQUEST_INVALID");
    assert.equal(
      (await raw(text('{"method":"launch"}'))).error.code,
      "REQUEST_INVALID",
    );
    assert.equal(
      (await raw(text('{"method":"status","serial":7}'))).error.code,
      "REQUEST_INVALID",
    );
    assert.equal(
      (await raw(new Uint8Array(5000).fill(32))).error.code,
      "REQUEST_INVALID",
    );
    assert.equal(
      (await raw(text('{"method":"issue","csr":"!!"}'))).error.code,
      "REQUEST_INVALID",
    );

    const anonymous = await TrustChainClient.connect(node, {
      hostname: "::1",
      port,
      roots: [ca.rootPem],
    });
    closers.push(() => anonymous.close());
    await assert.rejects(anonymous.provision("app"), isCode("UNAUTHORIZED"));
    const enrolled = await TrustChainClient.connect(node, {
      hostname: "::1",
      port,
      roots: [ca.rootPem],
      token: "ok",
    });
    closers.push(() => enrolled.close());
    await assert.rejects(
      enrolled.provision("app.example.com"),
      isCode("NAME_NOT_ALLOWED"),
    );
    await assert.rejects(
      enrolled.issue(new Uint8Array([1, 2, 3])),
      isCode("CSR_MALFORMED"),
    );
    await assert.rejects(
      enrolled.provision("app", { lifetimeMs: 30 * 86_400_000 }),
      isCode("LIFETIME_TOO_LONG"),
    );
    assert.equal((await enrolled.provision("app")).names[0], "app.stoq.local");

    // A service that is not who the pinned roots and name say is refused.
    await assert.rejects(
      TrustChainClient.connect(node, {
        hostname: "::1",
        port,
        roots: [other.rootPem],
      }),
      isCode("CERTIFICATE_REJECTED"),
    );
    await assert.rejects(
      TrustChainClient.connect(node, {
        hostname: "::1",
        port,
        roots: [ca.rootPem],
        serverName: "impostor.stoq.local",
      }),
      isCode("CERTIFICATE_REJECTED"),
    );
  } finally {
    for (const close of closers.reverse()) await close();
    await node.close();
    await caNode.close();
    await ca.close();
    await other.close();
  }
});
