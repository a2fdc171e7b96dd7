/**
 * `deno task bench:node`: 10,000 concurrent clients from this process against a STOQ node
 * (`src/node/main.ts`, default settings except the ports, the data directory, max_connections and
 * the idle timeout) in another process on ::1.
 * Each client connects to the echo service, trusting the node's CA, and does one echo whose bytes
 * are checked (SHA-256); all stay open together. Prints the node's resident memory per
 * connection, the time to establish all, echo latencies (p50/p99) during the ramp and once all
 * are held, and last `node connections held: <number>` (connections open on the node, by its
 * /metrics, once all were made; the client checks that none of its own died).
 *
 * Env: STOQ_CONNECTIONS (default 10000), STOQ_CONNECT_IN_FLIGHT (handshakes started at once,
 * default 256).
 *
 * @module
 */

import parsePrometheus from "npm:parse-prometheus-text-format@1.1.1";
import { StoqEndpoint } from "../mod.ts";
import { NodeProcess } from "../tests/_node.ts";
import { connectAll, oneEcho, rssOf } from "./_echo.ts";

const COUNT = Number(Deno.env.get("STOQ_CONNECTIONS") ?? 10_000);
const IN_FLIGHT = Number(Deno.env.get("STOQ_CONNECT_IN_FLIGHT") ?? 256);
const SAMPLE = Math.min(1000, COUNT);

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
}

const dir = await Deno.makeTempDir({ prefix: "stoq-bench-node-" });
const config = `${dir}/node.toml`;
await Deno.writeTextFile(
  config,
  `[network]
listen_addr = "[::1]:0"
max_connections = ${COUNT + 1000}
idle_timeout_ms = 600000

[metrics]
listen_addr = "[::1]:0"

[node]
data_dir = "${dir}/data"
`,
);
async function nodeHeld(metricsUrl: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  const family = (parsePrometheus(text) as {
    name: string;
    metrics: { value: string }[];
  }[]).find((f) => f.name === "stoq_node_connections_open");
  return Number(family!.metrics[0].value);
}

try {
  // The node in its own process, its log read as the node tests read it.
  await using node = await NodeProcess.start({
    home: dir,
    args: ["--config", config],
  });
  await using client = new StoqEndpoint();
  const options = {
    hostname: "::1",
    port: node.port,
    alpnProtocols: ["stoq-echo"],
    caCerts: [await node.root()],
    serverName: "localhost",
    maxIdleTimeout: 600_000,
  };

  // Warm-up (JIT on both sides, configuration), then the node's baseline memory.
  {
    const conn = await client.connect(options);
    await oneEcho(conn, -1);
    conn.close();
    await conn.finished;
  }
  const base = rssOf(node.child.pid);

  const { conns, echoMs: rampEchoes, seconds, died } = await connectAll(
    client,
    options,
    COUNT,
    IN_FLIGHT,
  );
  const rss = rssOf(node.child.pid);
  const held = await nodeHeld(node.url("/metrics"));

  // With everything held: one echo on each of SAMPLE connections, 32 at a time.
  const heldEchoes: number[] = [];
  let k = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (k < SAMPLE) {
      const i = k++;
      const at = Math.floor(i * conns.length / SAMPLE);
      heldEchoes.push(await oneEcho(conns[at], at));
    }
  }));

  rampEchoes.sort((a, b) => a - b);
  heldEchoes.sort((a, b) => a - b);
  console.log(
    `${COUNT} clients connected and echoed in ${seconds.toFixed(1)} s (${
      (COUNT / seconds).toFixed(0)
    }/s, ${IN_FLIGHT} handshakes in flight)`,
  );
  console.log(
    `node resident memory: ${(base / 2 ** 20).toFixed(0)} MiB before, ${
      (rss / 2 ** 20).toFixed(0)
    } MiB with ${held} held: ${
      ((rss - base) / COUNT / 1024).toFixed(1)
    } KiB per connection`,
  );
  console.log(
    `echo latency while connecting: p50 ${
      quantile(rampEchoes, 0.5).toFixed(2)
    } ms, p99 ${quantile(rampEchoes, 0.99).toFixed(2)} ms`,
  );
  console.log(
    `echo latency with all held (${SAMPLE} echoes, 32 at a time): p50 ${
      quantile(heldEchoes, 0.5).toFixed(2)
    } ms, p99 ${quantile(heldEchoes, 0.99).toFixed(2)} ms`,
  );
  const alive = conns.length - died();
  console.log(`client holds ${alive}; died ${died()}; node holds ${held}`);
  for (const conn of conns) conn.close();
  await Promise.all(conns.map((c) => c.finished));
  console.log(`node connections held: ${Math.min(alive, held)}`);
} finally {
  await Deno.remove(dir, { recursive: true });
}
