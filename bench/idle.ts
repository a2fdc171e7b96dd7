/**
 * `deno task bench:idle`: what an idle endpoint costs. A STOQ server in its own process accepts
 * 100 connections from this process; once every connection has completed a round trip on a
 * stream, both processes are left alone for 10 s and their CPU time (user + system, all
 * threads, from /proc) is read before and after. Prints both and last `idle CPU: <n> % of a
 * core` (the busier of the two processes).
 *
 * Env: STOQ_IDLE_CONNECTIONS (default 100), STOQ_IDLE_SECONDS (default 10).
 *
 * @module
 */

import { type StoqConnection, StoqEndpoint } from "../mod.ts";
import { startServer } from "./_throughput.ts";

const COUNT = Number(Deno.env.get("STOQ_IDLE_CONNECTIONS") ?? 100);
const SECONDS = Number(Deno.env.get("STOQ_IDLE_SECONDS") ?? 10);
const TICKS_PER_SECOND = 100; // USER_HZ

function cpuSeconds(pid: number | "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

await using server = await startServer("stoq");
await using client = new StoqEndpoint();
const conns: StoqConnection[] = [];
for (let i = 0; i < COUNT; i++) {
  conns.push(
    await client.connect({
      hostname: "::1",
      port: server.port,
      alpnProtocols: ["bench"],
      caCerts: [server.ca],
    }),
  );
}
// One round trip on each, so every connection has carried data before it idles.
await Promise.all(conns.map(async (conn) => {
  const { readable, writable } = await conn.createBidirectionalStream();
  const w = writable.getWriter();
  await w.write(new TextEncoder().encode("down 1 1\n"));
  await w.close();
  for await (const _ of readable);
}));
const serverBefore = cpuSeconds(server.pid);
const selfBefore = cpuSeconds("self");
const t0 = performance.now();
await new Promise((r) => setTimeout(r, SECONDS * 1000));
const elapsed = (performance.now() - t0) / 1000;
const serverPct = (cpuSeconds(server.pid) - serverBefore) / elapsed * 100;
const selfPct = (cpuSeconds("self") - selfBefore) / elapsed * 100;
console.log(
  `${COUNT} open connections, idle for ${
    elapsed.toFixed(1)
  } s: server process ${serverPct.toFixed(2)} %, client process ${
    selfPct.toFixed(2)
  } % of a core`,
);
for (const conn of conns) conn.close();
console.log(`idle CPU: ${Math.max(serverPct, selfPct).toFixed(2)} % of a core`);
