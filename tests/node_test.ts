/**
 * The STOQ node in its own process: `deno task serve` with no configuration, trust bootstrapped
 * from its TrustChain service, reloads, max_connections, the sink, enrollment, /metrics parsed as
 * Prometheus text, and graceful shutdown.
 */
import assert from "node:assert/strict";
import "npm:reflect-metadata@0.2.2";
import * as x509 from "npm:@peculiar/x509@2.2.0";
import parsePrometheus from "npm:parse-prometheus-text-format@1.1.1";
import { StoqEndpoint, type StoqError, TrustChainClient } from "../mod.ts";
import { connectNode, NodeProcess, tempDir } from "./_node.ts";
import { type LoadedConfig, parseNodeConfig } from "../src/node/config/load.ts";
import { StoqNode } from "../src/node/node.ts";
import {
  echoOnce,
  hashStream,
  randomBytes,
  sha256,
  writeAll,
} from "./_helpers.ts";

interface Family {
  name: string;
  type: string;
  metrics: {
    value?: string;
    labels?: Record<string, string>;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }[];
}

/** /metrics, parsed by a Prometheus text-format parser. */
async function scrape(node: NodeProcess): Promise<Map<string, Family>> {
  const response = await fetch(node.url("/metrics"));
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
  const families = parsePrometheus(await response.text()) as Family[];
  return new Map(families.map((f) => [f.name, f]));
}

/** The value of a metric sample whose labels include `labels`. */
function value(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const family = families.get(name);
  assert.ok(family, `no ${name} in /metrics`);
  const sample = family.metrics.find((m) =>
    Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)
  );
  if (!sample) return 0;
  return Number(sample.value ?? sample.count);
}

async function writeConfig(path: string, body: string): Promise<void> {
  // Write then rename, as editors do, so the watcher never reads half a file.
  await Deno.writeTextFile(`${path}.tmp`, body);
  await Deno.rename(`${path}.tmp`, path);
}

Deno.test("serve: `deno task serve` with no config answers an echo from a client that fetched the CA from the node's TrustChain service", async () => {
  await using home = await tempDir();
  await using node = await NodeProcess.start({
    task: true,
    home: home.path,
    args: ["--port", "0", "--metrics-port", "0"],
  });
  const started = node.started;
  assert.equal(started.listen, `[::]:${node.port}`);
  assert.deepEqual(started.alpn, ["stoq-echo", "stoq-sink", "trustchain/1"]);
  assert.equal(started.root_file, `${home.path}/node/root.pem`);
  // First start: data directory and CA created, root written.
  const rootFile = await Deno.readTextFile(`${home.path}/node/root.pem`);

  await using client = new StoqEndpoint();
  const root = await TrustChainClient.fetchRoot(client, {
    hostname: "::1",
    port: node.port,
    fingerprint: started.root_sha256 as string,
  });
  assert.equal(root, rootFile);
  // A wrong fingerprint is refused before anything is trusted.
  await assert.rejects(
    TrustChainClient.fetchRoot(client, {
      hostname: "::1",
      port: node.port,
      fingerprint: "00".repeat(32),
    }),
    (e: StoqError) => e.code === "CERTIFICATE_REJECTED",
  );

  const conn = await connectNode(client, node.port, root);
  const data = randomBytes(3 * 1024 * 1024 + 5);
  assert.deepEqual(await echoOnce(conn, data), {
    hash: sha256(data),
    bytes: data.length,
  });
  await conn.sendDatagram(new TextEncoder().encode("ping"));
  assert.equal(new TextDecoder().decode(await conn.readDatagram()), "ping");
  const open = await node.waitFor(
    "connection.open",
    (e) => e.alpn === "stoq-echo",
  );
  assert.equal(typeof open.conn, "number");
  assert.match(open.peer as string, /^\[::1\]:\d+$/);
  assert.match(open.time as string, /^\d{4}-\d\d-\d\dT/);
  assert.equal(open.level, "info");
  conn.close({ closeCode: 7, reason: "done" });
  const closed = await node.waitFor(
    "connection.close",
    (e) => e.conn === open.conn,
  );
  assert.equal(closed.peer, open.peer);
  assert.equal(closed.close_code, 7);
  assert.match(closed.reason as string, /closed by the peer with code 7/);

  // The CA is kept: a second start serves the same root.
  node.kill("SIGTERM");
  assert.equal((await node.status()).code, 0);
  await using again = await NodeProcess.start({
    home: home.path,
    args: ["--port", "0", "--metrics-port", "0"],
  });
  assert.equal(again.started.root_sha256, started.root_sha256);
  assert.notEqual(again.started.certificate_serial, started.certificate_serial);
});

Deno.test("serve: a reload changes max_connections without dropping a live connection; a broken file keeps the running config", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/node.toml`;
  const config = (max: number, extra = "") =>
    `[network]\nlisten_addr = "[::1]:0"\nmax_connections = ${max}\n${extra}\n[metrics]\nlisten_addr = "[::1]:0"\n\n[node]\ndata_dir = "${dir.path}/data"\n`;
  await writeConfig(file, config(2));
  await using node = await NodeProcess.start({
    home: dir.path,
    args: ["--config", file],
  });
  const root = await node.root();
  await using client = new StoqEndpoint();

  // A live connection with a stream in flight across the reloads.
  const live = await connectNode(client, node.port, root);
  const { readable, writable } = await live.createBidirectionalStream();
  const writer = writable.getWriter();
  const reader = readable.getReader();
  const sent: Uint8Array[] = [];
  const got: Uint8Array[] = [];
  const roundTrip = async () => {
    const chunk = randomBytes(100_000);
    sent.push(chunk);
    await writer.write(chunk);
    let n = 0;
    while (n < chunk.length) {
      const { value } = await reader.read();
      got.push(value!);
      n += value!.byteLength;
    }
  };
  await roundTrip();
  const second = await connectNode(client, node.port, root);

  // Lowered to 1 through the file watcher: new connections are refused with BUSY (0x10).
  let mark = node.events.length;
  await writeConfig(file, config(1));
  const reloaded = await node.waitFor(
    "config.reloaded",
    undefined,
    30_000,
    mark,
  );
  assert.deepEqual(reloaded.applied, ["network.max_connections"]);
  const refused = await connectNode(client, node.port, root);
  assert.deepEqual(await refused.closed, { closeCode: 0x10, reason: "" });
  await node.waitFor("connection.refused");
  await roundTrip();

  // A broken file: logged, nothing changes, the node keeps serving.
  mark = node.events.length;
  await writeConfig(file, config(5, "max_conections = 5"));
  const failed = await node.waitFor(
    "config.reload_failed",
    undefined,
    30_000,
    mark,
  );
  assert.equal(failed.code, "CONFIG_INVALID");
  assert.match(
    failed.message as string,
    /node\.toml:4: unknown key 'max_conections'/,
  );
  const stillRefused = await connectNode(client, node.port, root);
  assert.equal((await stillRefused.closed).closeCode, 0x10);
  await roundTrip();

  // Raised to 3 with SIGHUP; a restart-only key is reported, not applied.
  await Deno.writeTextFile(
    file,
    config(3).replace('listen_addr = "[::1]:0"', 'listen_addr = "[::1]:1"'),
  );
  mark = node.events.length;
  node.kill("SIGHUP");
  const raised = await node.waitFor(
    "config.reloaded",
    (e) => (e.applied as string[]).includes("network.max_connections"),
    30_000,
    mark,
  );
  assert.deepEqual(raised.restart_required, ["network.listen_addr"]);
  const third = await connectNode(client, node.port, root);
  const data = randomBytes(200_000);
  assert.equal((await echoOnce(third, data)).hash, sha256(data));
  await roundTrip();

  // The live connection never dropped and its stream echoed every byte.
  await writer.close();
  assert.equal((await reader.read()).done, true);
  const all = (parts: Uint8Array[]) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) out.set(p, (off += p.length) - p.length);
    return out;
  };
  assert.equal(sha256(all(got)), sha256(all(sent)));
  assert.equal(live.remoteAddr.port, node.port);
  assert.equal(
    (await scrape(node)).get("stoq_node_connections_open")!.metrics[0].value,
    "3",
  );
  const metrics = await scrape(node);
  assert.equal(
    value(metrics, "stoq_node_connections_refused_total", {
      reason: "max_connections",
    }),
    2,
  );
  assert.equal(
    value(metrics, "stoq_node_config_reloads_total", { result: "error" }),
    1,
  );
  for (const c of [live, second, third]) c.close();
});

Deno.test("serve: /metrics parses as Prometheus text and its counters move with traffic", async () => {
  await using home = await tempDir();
  await using node = await NodeProcess.start({
    home: home.path,
    args: ["--port", "0", "--metrics-port", "0"],
  });
  const root = await (await fetch(node.url("/root.pem"))).text();
  assert.equal(await (await fetch(node.url("/healthz"))).text(), "ok\n");
  // The CA's transparency log, as C2SP static-ct-api.
  const checkpoint = await fetch(node.url("/ct/checkpoint"));
  assert.equal(checkpoint.status, 200);
  assert.match(await checkpoint.text(), /^stoq\.trustchain\/stoq-node\n\d+\n/);
  const before = await scrape(node);
  for (
    const name of [
      "stoq_node_connections_open",
      "stoq_node_connections_total",
      "stoq_node_connections_refused_total",
      "stoq_node_streams_total",
      "stoq_node_bytes_total",
      "stoq_node_throughput_bytes_per_second",
      "stoq_node_handshakes_total",
      "stoq_node_handshake_duration_seconds",
      "stoq_node_errors_total",
      "stoq_node_certificate_expiry_timestamp_seconds",
      "stoq_node_trustchain_log_entries",
      "process_resident_memory_bytes",
    ]
  ) assert.ok(before.has(name), name);
  assert.equal(
    before.get("stoq_node_handshake_duration_seconds")!.type,
    "HISTOGRAM",
  );
  const expiry = value(
    before,
    "stoq_node_certificate_expiry_timestamp_seconds",
    {
      certificate: "node",
    },
  );
  assert.ok(expiry > Date.now() / 1000 + 3600, String(expiry));
  assert.ok(value(before, "stoq_node_trustchain_log_entries") >= 1);

  await using client = new StoqEndpoint();
  const data = randomBytes(2 * 1024 * 1024);
  const conns = [];
  for (let i = 0; i < 3; i++) {
    const conn = await connectNode(client, node.port, root);
    assert.equal((await echoOnce(conn, data)).hash, sha256(data));
    conns.push(conn);
  }
  const sink = await connectNode(client, node.port, root, "stoq-sink");
  const { readable, writable } = await sink.createBidirectionalStream();
  const w = writable.getWriter();
  await w.write(data);
  await w.close();
  const receipt = new Uint8Array(await new Response(readable).arrayBuffer());
  assert.equal(
    new DataView(receipt.buffer).getBigUint64(0),
    BigInt(data.length),
  );

  const after = await scrape(node);
  const moved = (name: string, labels?: Record<string, string>) =>
    value(after, name, labels) - value(before, name, labels);
  assert.equal(
    moved("stoq_node_connections_total", { service: "stoq-echo" }),
    3,
  );
  assert.equal(
    moved("stoq_node_connections_total", { service: "stoq-sink" }),
    1,
  );
  assert.equal(value(after, "stoq_node_connections_open"), 4);
  assert.equal(moved("stoq_node_handshakes_total"), 4);
  assert.equal(moved("stoq_node_handshake_duration_seconds"), 4);
  assert.equal(moved("stoq_node_streams_total", { service: "stoq-echo" }), 3);
  assert.equal(
    moved("stoq_node_bytes_total", { direction: "received" }),
    4 * data.length,
  );
  assert.equal(
    moved("stoq_node_bytes_total", { direction: "sent" }),
    3 * data.length + 8,
  );
  for (const c of [...conns, sink]) c.close();
});

Deno.test("serve: issuance through the node's TrustChain service needs an enrollment token", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/node.toml`;
  await Deno.writeTextFile(`${dir.path}/tokens`, "# one per line\ns3cret\n");
  await Deno.writeTextFile(
    file,
    `[network]\nlisten_addr = "[::1]:0"\n[metrics]\nenabled = false\n[trustchain]\nname = "ca-test"\nenrollment_tokens_file = "${dir.path}/tokens"\n[node]\ndata_dir = "${dir.path}/data"\n`,
  );
  await using node = await NodeProcess.start({
    home: dir.path,
    args: ["--config", file],
  });
  assert.equal(node.started.metrics, null);
  const root = await node.root();
  await using client = new StoqEndpoint();
  await using anonymous = await TrustChainClient.connect(client, {
    hostname: "::1",
    port: node.port,
    roots: [root],
  });
  assert.equal(anonymous.member, "ca-test");
  await assert.rejects(
    anonymous.provision("my-app"),
    (e: StoqError) => e.code === "UNAUTHORIZED",
  );
  await using enrolled = await TrustChainClient.connect(client, {
    hostname: "::1",
    port: node.port,
    roots: [root],
    token: "s3cret",
  });
  const identity = await enrolled.provision("my-app");
  assert.deepEqual(identity.names, ["my-app.stoq.local"]);
  const bundle = await enrolled.bundle();
  assert.deepEqual(
    bundle?.bundle.members.map((m) => m.name),
    ["ca-test"],
  );
  await node.waitFor("trustchain.issue", (e) => e.authorized === true);
});

Deno.test("serve: SIGTERM lets an in-flight 64 MiB transfer complete, refuses new work, exits 0", async () => {
  await using home = await tempDir();
  await using node = await NodeProcess.start({
    home: home.path,
    args: ["--port", "0", "--metrics-port", "0"],
  });
  const root = await node.root();
  await using client = new StoqEndpoint();
  const conn = await connectNode(client, node.port, root);
  const idle = await connectNode(client, node.port, root);
  const data = randomBytes(64 * 1024 * 1024);
  let signalled = false;
  const { readable, writable } = await conn.createBidirectionalStream();
  const [, echoed] = await Promise.all([
    writeAll(writable, data, 1 << 20),
    hashStream(readable, (bytes) => {
      if (!signalled && bytes >= 8 * 1024 * 1024) {
        signalled = true;
        node.kill("SIGTERM");
      }
    }),
  ]);
  assert.deepEqual(echoed, { hash: sha256(data), bytes: data.length });
  assert.ok(signalled);
  const draining = await node.waitFor("node.draining");
  assert.equal(draining.reason, "SIGTERM");
  assert.equal(draining.streams, 1);
  // The idle connection was closed with SHUTDOWN (0x11); the transfer's once it was done.
  assert.equal((await idle.closed).closeCode, 0x11);
  assert.equal((await conn.closed).closeCode, 0x11);
  assert.equal((await node.status()).code, 0);
  assert.ok(node.events.some((e) => e.event === "node.stopped"));
  assert.ok(!node.events.some((e) => e.event === "node.deadline_reached"));
});

Deno.test("serve: a stream that does not finish is cut at the shutdown deadline", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/node.toml`;
  await Deno.writeTextFile(
    file,
    `[network]\nlisten_addr = "[::1]:0"\n[metrics]\nenabled = false\n[node]\ndata_dir = "${dir.path}/data"\nshutdown_deadline_ms = 300\n`,
  );
  await using node = await NodeProcess.start({
    home: dir.path,
    args: ["--config", file],
  });
  const root = await node.root();
  await using client = new StoqEndpoint();
  const conn = await connectNode(client, node.port, root);
  const { readable, writable } = await conn.createBidirectionalStream();
  const w = writable.getWriter();
  await w.write(new Uint8Array(10)); // never finished
  // Echoed back: the node is serving the stream.
  const { value } = await readable.getReader().read();
  assert.equal(value?.byteLength, 10);
  node.kill("SIGINT");
  assert.equal((await conn.closed).closeCode, 0x11);
  const cut = await node.waitFor("node.deadline_reached");
  assert.equal(cut.streams, 1);
  assert.equal((await node.status()).code, 0);
});

Deno.test("serve: the node's certificate is renewed before it expires; live connections keep theirs", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/node.toml`;
  // A one-minute certificate renewed at 5 % of its lifetime: every 3 s.
  await Deno.writeTextFile(
    file,
    `[network]\nlisten_addr = "[::1]:0"\n[metrics]\nenabled = false\n[trustchain]\ncertificate_lifetime_ms = 60000\nrenew_at = 0.05\n[node]\ndata_dir = "${dir.path}/data"\n`,
  );
  await using node = await NodeProcess.start({
    home: dir.path,
    args: ["--config", file],
  });
  const root = await node.root();
  const first = node.started.certificate_serial as string;
  await using client = new StoqEndpoint();
  // The chain is checked against the root by the transport; the verifier only records the leaf.
  const served = async () => {
    let leaf: Uint8Array | undefined;
    const conn = await connectNode(client, node.port, root, "stoq-echo", {
      verifyPeer: (peer) => {
        leaf = peer.leaf;
        return true;
      },
      resumption: false,
    });
    const cert = new x509.X509Certificate(leaf!.slice());
    // TrustChain names serials without leading zeros; X.509 text pads to whole bytes.
    const serial = cert.serialNumber.toLowerCase().replace(/^0+/, "");
    return { conn, serial, cert };
  };
  const before = await served();
  assert.equal(before.serial, first);
  assert.deepEqual(
    before.cert.getExtension(x509.SubjectAlternativeNameExtension)!.names
      .items.map((n) => n.value),
    ["node.stoq.local", "trustchain.stoq.local", "localhost"],
  );
  const renewed = await node.waitFor("certificate.renewed", undefined, 30_000);
  assert.notEqual(renewed.serial, first);
  const after = await served();
  assert.equal(after.serial, renewed.serial);
  // The connection made before the renewal still echoes.
  const data = randomBytes(50_000);
  assert.equal((await echoOnce(before.conn, data)).hash, sha256(data));
  before.conn.close();
  after.conn.close();
});

Deno.test("serve: a second node on a taken port exits 1 with one line", async () => {
  await using home = await tempDir();
  await using first = await NodeProcess.start({
    home: home.path,
    args: ["--port", "0", "--metrics-port", "0"],
  });
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      new URL("../src/node/main.ts", import.meta.url).pathname,
      "--port",
      String(first.port),
      "--metrics-port",
      "0",
    ],
    env: { STOQ_HOME: home.path },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 1);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(stderr.trimEnd().split("\n").length, 1, stderr);
  assert.match(stderr, /^stoq node: ADDRESS_IN_USE: /);
});

Deno.test("serve: a reload changes the stream limit of new connections only", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/node.toml`;
  const config = (streams: number) =>
    `[network]\nlisten_addr = "[::1]:0"\nmax_bidirectional_streams = ${streams}\n[metrics]\nenabled = false\n[node]\ndata_dir = "${dir.path}/data"\n`;
  await Deno.writeTextFile(file, config(4));
  await using node = await NodeProcess.start({
    home: dir.path,
    args: ["--config", file],
  });
  const root = await node.root();
  await using client = new StoqEndpoint();
  const old = await connectNode(client, node.port, root);
  await Deno.writeTextFile(file, config(1));
  const mark = node.events.length;
  node.kill("SIGHUP");
  const reloaded = await node.waitFor(
    "config.reloaded",
    undefined,
    30_000,
    mark,
  );
  assert.deepEqual(reloaded.applied, ["network.max_bidirectional_streams"]);
  const fresh = await connectNode(client, node.port, root);
  const open = (conn: typeof fresh) =>
    conn.createBidirectionalStream({ waitUntilAvailable: false });
  // The new connection may open one stream at a time; the old one keeps four.
  await open(fresh);
  await assert.rejects(
    open(fresh),
    (e: StoqError) => e.code === "STREAM_LIMIT",
  );
  for (let i = 0; i < 4; i++) await open(old);
  old.close();
  fresh.close();
});

Deno.test("serve: a reload that finishes reading its file during a shutdown changes nothing and starts no timer", async () => {
  await using dir = await tempDir();
  const text = (renewAt: number) =>
    `[network]\nlisten_addr = "[::1]:0"\n[metrics]\nenabled = false\n[trustchain]\nrenew_at = ${renewAt}\n[node]\ndata_dir = "${dir.path}/data"\n`;
  const events: string[] = [];
  const node = await StoqNode.start(
    parseNodeConfig(text(0.5), "node.toml"),
    { write: (line) => events.push(JSON.parse(line).event) },
  );
  const root = await Deno.readTextFile(`${dir.path}/data/root.pem`);
  await using client = new StoqEndpoint();
  const conn = await connectNode(client, node.addr.port, root);
  // An open stream keeps the shutdown waiting while the reload goes on.
  const { readable, writable } = await conn.createBidirectionalStream();
  const writer = writable.getWriter();
  await writer.write(new Uint8Array([1]));
  const reader = readable.getReader();
  await reader.read();
  const file = Promise.withResolvers<LoadedConfig>();
  const reloading = node.reload(file.promise);
  const stopping = node.shutdown("test");
  // A new renew_at restarts the certificate rotation (a timer).
  file.resolve(parseNodeConfig(text(0.6), "node.toml"));
  await assert.rejects(reloading, (err: StoqError) => err.code === "CLOSED");
  await writer.close();
  while (!(await reader.read()).done) { /* the echo's end */ }
  await stopping;
  assert.ok(!events.includes("config.reloaded"), events.join(" "));
  // Deno's sanitizers also fail this test if a rotation timer outlived the node.
});
