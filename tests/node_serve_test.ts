import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { StoqEndpoint, StoqError } from "../mod.ts";
import { DEFAULT_CONFIG, parseNodeConfig } from "../src/node/config.ts";
import { startEchoNode } from "../src/node/serve.ts";

Deno.test("node config: TOML values override the defaults", () => {
  const config = parseNodeConfig(`
[network]
listen = "[::1]:9443"
alpn = ["a", "b"]
congestion_control = "bbr"
idle_timeout_ms = 5000
[tls]
dev_cert_dir = "/tmp/x"
`);
  assert.deepEqual(config, {
    hostname: "::1",
    port: 9443,
    alpn: ["a", "b"],
    congestionControl: "bbr",
    idleTimeoutMs: 5000,
    devCertDir: "/tmp/x",
  });
  assert.deepEqual(parseNodeConfig(""), DEFAULT_CONFIG);
});

Deno.test("node config: bad values are refused with INVALID_ARGUMENT", () => {
  for (
    const text of [
      `[network]\nlisten = "0.0.0.0:8443"`,
      `[network]\nalpn = "x"`,
      `[network]\ncongestion_control = "reno"`,
      `[network]\nidle_timeout_ms = -1`,
      `not toml =`,
    ]
  ) {
    assert.throws(
      () => parseNodeConfig(text),
      (e) => e instanceof StoqError && e.code === "INVALID_ARGUMENT",
      text,
    );
  }
});

Deno.test("serve: the echo node makes dev certificates and echoes streams and datagrams", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const node = await startEchoNode({
      ...DEFAULT_CONFIG,
      hostname: "::1",
      port: 0,
      devCertDir: dir,
    });
    try {
      const ca = await Deno.readTextFile(`${dir}/ca.pem`);
      await using client = new StoqEndpoint();
      const conn = await client.connect({
        hostname: "::1",
        port: node.listener.addr.port,
        alpnProtocols: ["stoq-echo"],
        caCerts: [ca],
      });
      const payload = new Uint8Array(1024 * 1024);
      for (let i = 0; i < payload.length; i += 65536) {
        crypto.getRandomValues(payload.subarray(i, i + 65536));
      }
      const { readable, writable } = await conn.createBidirectionalStream();
      const echoed = (async () => {
        const h = createHash("sha256");
        for await (const chunk of readable) h.update(chunk);
        return h.digest("hex");
      })();
      const w = writable.getWriter();
      await w.write(payload);
      await w.close();
      assert.equal(
        await echoed,
        createHash("sha256").update(payload).digest("hex"),
      );
      await conn.sendDatagram(new TextEncoder().encode("ping"));
      assert.equal(new TextDecoder().decode(await conn.readDatagram()), "ping");
    } finally {
      await node.endpoint.close();
      await node.done;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
