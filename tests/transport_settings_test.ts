import assert from "node:assert/strict";
import {
  assertStoqError,
  echoOnce,
  pair,
  randomBytes,
  rejection,
  serveEcho,
  sha256,
} from "./_helpers.ts";
import { StoqEndpoint } from "../mod.ts";

for (
  const [name, options] of [
    ["pacing off", { pacing: false }],
    ["send buffering on", { sendBuffering: true }],
    ["BBR", { congestionControl: "bbr" as const }],
    ["acknowledgements delayed 1 ms at most", { maxAckDelay: 1 }],
    ["msquic's 25 ms acknowledgement delay", { maxAckDelay: 25 }],
    ["wide windows", {
      streamReceiveWindow: 16 * 1024 * 1024,
      connectionReceiveWindow: 32 * 1024 * 1024,
    }],
  ] as const
) {
  Deno.test(`a 16 MiB echo is intact with ${name} on both ends`, async () => {
    await using p = await pair({ listen: options, connect: options });
    const served = serveEcho(p.peer);
    const data = randomBytes(16 * 1024 * 1024);
    const back = await echoOnce(p.conn, data, 64 * 1024);
    assert.equal(back.bytes, data.byteLength);
    assert.equal(back.hash, sha256(data));
    p.conn.close();
    await served;
  });
}

Deno.test("transport settings of the wrong type are refused before anything opens", async () => {
  await using client = new StoqEndpoint();
  const base = { hostname: "::1", port: 1, alpnProtocols: ["x"] };
  for (
    const bad of [
      { pacing: "yes" },
      { sendBuffering: 1 },
      { congestionControl: "reno" },
      { streamReceiveWindow: 10 },
      { maxAckDelay: 0 },
      { maxAckDelay: 16384 },
      { maxAckDelay: 2.5 },
    ]
  ) {
    const err = await rejection(client.connect({ ...base, ...bad } as never));
    assertStoqError(err, "INVALID_ARGUMENT");
  }
  assert.throws(
    () => new StoqEndpoint({ gso: "off" as never }),
    (err: unknown) => assertStoqError(err, "INVALID_ARGUMENT") !== undefined,
  );
});

Deno.test("GSO is process-wide: the first endpoint turns it off, a later one asking for it on is refused", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      new URL("./fixtures/gso_off.ts", import.meta.url).pathname,
    ],
    stderr: "inherit",
  }).output();
  assert.ok(out.success);
  assert.deepEqual(
    new TextDecoder().decode(out.stdout).trim().split("\n"),
    ["ok", "refused"],
  );
  // This process's msquic sends with GSO: asking for it off now is refused.
  await using first = new StoqEndpoint();
  assert.throws(
    () => new StoqEndpoint({ gso: false }),
    (err: unknown) => assertStoqError(err, "INVALID_ARGUMENT") !== undefined,
  );
  await new StoqEndpoint({ gso: true }).close();
  void first;
});
