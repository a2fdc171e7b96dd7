/**
 * `deno task dashboard:screenshot [file]`: runs a node under about a minute of varying load
 * (connections ramping up and down, echo traffic in waves) and saves a screenshot of its
 * dashboard taken in headless Chromium (default docs/dashboard.png, the README's picture).
 *
 * @module
 */

import puppeteer from "npm:puppeteer-core@25.16.0";
import { type StoqConnection, StoqEndpoint } from "../mod.ts";
import { connectNode, NodeProcess, tempDir } from "../tests/_node.ts";
import { randomBytes } from "../tests/_helpers.ts";

const out = Deno.args[0] ?? "docs/dashboard.png";
const SECONDS = 60;

await using home = await tempDir();
// Idle connections stay (the default idle timeout, 30 s, would close the ramp's early ones).
await Deno.writeTextFile(
  `${home.path}/node.toml`,
  `[network]\nlisten_addr = "[::1]:0"\nidle_timeout_ms = 600000\n[metrics]\nlisten_addr = "[::1]:0"\n`,
);
await using node = await NodeProcess.start({
  home: home.path,
  args: ["--config", `${home.path}/node.toml`],
});
const root = await node.root();
const browser = await puppeteer.launch({
  executablePath: Deno.env.get("STOQ_CHROMIUM") ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage();
await page.setViewport({ width: 1100, height: 900 });
await page.goto(node.url("/"), { waitUntil: "load" });
await using client = new StoqEndpoint();
const chunk = randomBytes(64 * 1024);
const conns: StoqConnection[] = [];
const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;

// Connections: up to 400 over the first 20 s, down to 150 after 40 s.
const ramp = (async () => {
  while (elapsed() < SECONDS) {
    const want = elapsed() < 20
      ? Math.round(elapsed() * 20)
      : elapsed() < 40
      ? 400
      : 150;
    while (conns.length < want) {
      conns.push(
        await connectNode(client, node.port, root, "stoq-echo", {
          maxIdleTimeout: 600_000,
        }),
      );
    }
    while (conns.length > want) conns.pop()!.close();
    await new Promise((r) => setTimeout(r, 100));
  }
})();

// Throughput in waves: four echo streams paced by one sine over 20 s.
const waves = Promise.all([0, 1, 2, 3].map(async () => {
  while (elapsed() < SECONDS) {
    // A stream that stalls (a transport issue seen under bulk traffic) ends at the idle timeout; start
    // another.
    try {
      const conn = await connectNode(client, node.port, root);
      const { readable, writable } = await conn.createBidirectionalStream();
      const drained = new Response(readable).arrayBuffer();
      const w = writable.getWriter();
      while (elapsed() < SECONDS) {
        const level = (1 + Math.sin((elapsed() / 20) * 2 * Math.PI)) / 2;
        for (let i = 0; i < 1 + Math.round(level * 24); i++) {
          await w.write(chunk);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      await w.close();
      await drained;
      conn.close();
    } catch (err) {
      console.error(`a wave stream failed (${err}); starting another`);
    }
  }
}));

// The picture is taken while the load still runs.
const shot = (async () => {
  while (elapsed() < SECONDS - 2) await new Promise((r) => setTimeout(r, 250));
  await page.screenshot({ path: out, fullPage: true });
})();
try {
  await Promise.all([ramp, waves, shot]);
  console.log(`saved ${out}`);
} finally {
  await browser.close();
  for (const c of conns) c.close();
}
