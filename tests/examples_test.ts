/** The examples run as written (with small sizes), each in its own process. */
import assert from "node:assert/strict";
import { NodeProcess } from "./_node.ts";

async function example(name: string, args: string[], home: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      new URL(`../examples/${name}`, import.meta.url).pathname,
      ...args,
    ],
    env: { STOQ_HOME: home },
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(
    out.success,
    `${name} failed:\n${text}\n${new TextDecoder().decode(out.stderr)}`,
  );
  return text;
}

Deno.test("the examples run as written", async (t) => {
  const home = await Deno.makeTempDir({ prefix: "stoq-examples-" });
  try {
    await t.step("phoenix_demo.ts", async () => {
      const text = await example("phoenix_demo.ts", ["8"], home);
      assert.match(
        text,
        /demo-peer received 8388608 bytes from my-app\.stoq\.local/,
      );
      assert.match(text, /^Throughput: [\d.]+ Gbps$/m);
    });
    await t.step("throughput_test.ts", async () => {
      const text = await example("throughput_test.ts", ["1"], home);
      assert.match(
        text,
        /\[#+\] 100% {2}send [\d.]+ Gbit\/s {2}receive [\d.]+ Gbit\/s/,
      );
      const m = /Sent (\d+) MiB .* received (\d+) MiB/.exec(text);
      assert.ok(m && Number(m[1]) > 0 && m[1] === m[2], text);
    });
    await t.step("file_transfer.ts", async () => {
      const file = `${home}/input.bin`;
      const data = crypto.getRandomValues(new Uint8Array(65536));
      const big = new Uint8Array(3 * 1024 * 1024 + 17);
      for (let off = 0; off < big.length; off += data.length) {
        big.set(data.subarray(0, big.length - off), off);
      }
      await Deno.writeFile(file, big);
      const text = await example("file_transfer.ts", [
        file,
        `${home}/output.bin`,
      ], home);
      assert.match(text, /^verified in /m);
      assert.deepEqual(await Deno.readFile(`${home}/output.bin`), big);
    });
    await t.step("echo_client.ts against a node", async () => {
      await using node = await NodeProcess.start({
        home,
        args: ["--port", "0", "--metrics-port", "0"],
      });
      const port = String(node.port);
      for (
        const args of [
          ["::1", port],
          ["::1", port, "--fingerprint", node.started.root_sha256 as string],
        ]
      ) {
        const text = await example("echo_client.ts", args, home);
        assert.match(text, /^connected to \[::1\]:\d+ \(stoq-echo\)$/m);
        assert.match(text, /^echoed 8388620 bytes, SHA-256 matches$/m);
        assert.match(text, /^datagram echoed: ping$/m);
      }
    });
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
