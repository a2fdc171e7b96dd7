/**
 * The node's dashboard in a real browser: Debian's headless Chromium (installed by `make test`)
 * driven by puppeteer-core loads the page from the node while traffic flows, and the page is
 * checked from inside: three uPlot charts, data points with traffic in them, the throughput
 * line drawn on the canvas. A screenshot is saved to build/node-dashboard.png.
 */
import assert from "node:assert/strict";
import puppeteer from "npm:puppeteer-core@25.16.0";
import { StoqEndpoint } from "../mod.ts";
import { connectNode, NodeProcess, tempDir } from "./_node.ts";
import { randomBytes } from "./_helpers.ts";

const SCREENSHOT = new URL("../build/node-dashboard.png", import.meta.url)
  .pathname;

/** The system Chromium: $STOQ_CHROMIUM, else Debian's. */
function chromium(): string {
  const candidates = [
    Deno.env.get("STOQ_CHROMIUM"),
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
  ].filter((p): p is string => !!p);
  for (const path of candidates) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Next.
    }
  }
  throw new Error(
    `No Chromium found (looked at ${
      candidates.join(", ")
    }): \`make test\` installs Debian's chromium; or set STOQ_CHROMIUM`,
  );
}

interface PageState {
  charts: number;
  canvases: number;
  points: number;
  maxThroughput: number;
  maxConnections: number;
  linePixels: number;
  status: string;
}

Deno.test("serve: the dashboard renders live charts with data points in headless Chromium", async () => {
  await using home = await tempDir();
  await using node = await NodeProcess.start({
    home: home.path,
    args: ["--port", "0", "--metrics-port", "0"],
  });
  const root = await node.root();
  await using client = new StoqEndpoint();
  const conns = await Promise.all(
    [0, 1, 2].map(() => connectNode(client, node.port, root)),
  );
  // Traffic while the page loads: one echo stream per connection, fed until the check is done.
  let traffic = true;
  const chunk = randomBytes(256 * 1024);
  const load = Promise.all(conns.map(async (conn) => {
    const { readable, writable } = await conn.createBidirectionalStream();
    const draining = new Response(readable).arrayBuffer();
    const w = writable.getWriter();
    let sent = 0;
    while (traffic) {
      await w.write(chunk);
      sent += chunk.byteLength;
    }
    await w.close();
    assert.equal((await draining).byteLength, sent);
  }));

  const browser = await puppeteer.launch({
    executablePath: chromium(),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 900 });
    const failed: string[] = [];
    page.on("requestfailed", (r) => failed.push(r.url()));
    page.on("pageerror", (e) => failed.push(String(e)));
    await page.goto(node.url("/"), { waitUntil: "load" });
    // Wait, from inside the page, for samples that carry the traffic.
    await page.waitForFunction(
      () => {
        const d = (globalThis as unknown as {
          stoqDashboard?: {
            points(): number;
            data(): Record<string, number[][]>;
          };
        }).stoqDashboard;
        if (!d || d.points() < 3) return false;
        return d.data().throughput[1].some((v) => v > 0);
      },
      { timeout: 30_000, polling: 200 },
    );
    // Runs in the page (a string: the browser's DOM types are not Deno's).
    const state = await page.evaluate(`(() => {
      const d = globalThis.stoqDashboard;
      const data = d.data();
      // Pixels of the received (#2f6fde) or sent (#d9822b, drawn over it: an echo sends what
      // it receives) line on the throughput chart's canvas.
      const canvas = document.querySelector("#chart-throughput canvas");
      const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      const near = (i, r, g, b) =>
        Math.abs(px[i] - r) < 40 && Math.abs(px[i + 1] - g) < 40 &&
        Math.abs(px[i + 2] - b) < 40 && px[i + 3] > 200;
      let linePixels = 0;
      for (let i = 0; i < px.length; i += 4) {
        if (near(i, 0x2f, 0x6f, 0xde) || near(i, 0xd9, 0x82, 0x2b)) linePixels++;
      }
      return {
        charts: document.querySelectorAll(".uplot").length,
        canvases: document.querySelectorAll(".uplot canvas").length,
        points: d.points(),
        maxThroughput: Math.max(...data.throughput[1]),
        maxConnections: Math.max(...data.connections[1]),
        linePixels,
        status: document.getElementById("status").textContent,
      };
    })()`) as PageState;
    assert.deepEqual(failed, []);
    assert.equal(state.charts, 3);
    assert.equal(state.canvases, 3);
    assert.ok(state.points >= 3, JSON.stringify(state));
    assert.ok(state.maxThroughput > 0, JSON.stringify(state));
    assert.equal(state.maxConnections, 3);
    assert.ok(state.linePixels > 20, JSON.stringify(state));
    assert.match(
      state.status,
      /CA stoq-node · up \d+ s · max_connections 10000/,
    );
    await Deno.mkdir(new URL("../build/", import.meta.url), {
      recursive: true,
    });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok((await Deno.stat(SCREENSHOT)).size > 10_000);
  } finally {
    await browser.close();
    traffic = false;
    await load;
    for (const c of conns) c.close();
  }
});
