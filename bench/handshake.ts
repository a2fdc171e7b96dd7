/**
 * `deno task bench:handshake`: connects per second and connect latency (p50/p99) to a server in
 * another process on ::1 — sequential, and with 32 connects in flight — for STOQ cold (no
 * session ticket), STOQ resumed (the endpoint's ticket), STOQ 0-RTT (timed until `connect`
 * resolves, when streams can carry data), Deno's built-in QUIC cold
 * (`Deno.connectQuic` as called by default: a new endpoint, so no session to resume) and resumed
 * (one shared client endpoint, whose session store resumes), and a C client over the same
 * libmsquic (bench/c_handshake.c, chain checked against the CA file by msquic), cold and resumed
 * (the ticket of a first connection). Each implementation talks to a server of its own kind;
 * every client checks the server's ECDSA P-256 certificate against the same dev CA, and closes
 * each connection once its handshake is done.
 *
 * Rounds alternate the implementations so machine noise hits all alike; figures are medians.
 * The last line reads `STOQ/Deno handshake ratio: <number>`: sequential cold STOQ over Deno.
 *
 * Env: STOQ_HS_SEQUENTIAL (connects per sequential run, default 300), STOQ_HS_CONCURRENT
 * (connects per concurrent run, default 1000), STOQ_HS_ROUNDS (default 3).
 *
 * @module
 */

import { StoqEndpoint } from "../mod.ts";

const SEQUENTIAL = Number(Deno.env.get("STOQ_HS_SEQUENTIAL") ?? 300);
const CONCURRENT = Number(Deno.env.get("STOQ_HS_CONCURRENT") ?? 1000);
const ROUNDS = Number(Deno.env.get("STOQ_HS_ROUNDS") ?? 3);
const IN_FLIGHT = 32;
const WARMUP = 50;

const build = new URL("../build/", import.meta.url).pathname;
const certFile = `${build}dev-certs/cert.pem`;
const keyFile = `${build}dev-certs/key.pem`;
const caFile = `${build}dev-certs/ca.pem`;
const cBinary = `${build}c_handshake`;
const ca = await Deno.readTextFile(caFile);

interface Figures {
  rate: number;
  p50: number;
  p99: number;
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

/** Waits for a child's first stdout line and returns it. */
async function firstLine(child: Deno.ChildProcess): Promise<string> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the server exited before listening");
    text += value;
  }
  reader.releaseLock();
  return text.trim();
}

interface Server extends AsyncDisposable {
  port: number;
}

async function startServer(kind: "stoq" | "deno" | "c"): Promise<Server> {
  let child: Deno.ChildProcess;
  let port: number;
  if (kind === "c") {
    port = 20000 + Math.floor(Math.random() * 20000);
    child = new Deno.Command(cBinary, {
      args: ["server", certFile, keyFile, String(port)],
      stdout: "piped",
    }).spawn();
    await firstLine(child);
  } else {
    child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--unstable-net",
        new URL("./_handshake_server.ts", import.meta.url).pathname,
        kind,
        certFile,
        keyFile,
      ],
      stdout: "piped",
    }).spawn();
    port = Number(await firstLine(child));
  }
  child.stdout.cancel().catch(() => {});
  return {
    port,
    async [Symbol.asyncDispose]() {
      child.kill();
      await child.status;
    },
  };
}

/** `count` connects, `inFlight` at a time, each timed from call to handshake. */
async function measure(
  count: number,
  inFlight: number,
  connectOnce: () => Promise<number | void>,
): Promise<Figures> {
  const latencies: number[] = [];
  let started = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (started < count) {
        started++;
        const t = performance.now();
        const own = await connectOnce();
        latencies.push(own ?? performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    rate: count / seconds,
    p50: latencies[Math.floor(count / 2)],
    p99: latencies[Math.floor(count * 0.99)],
  };
}

let cResumed = 0;
let cAttempted = 0;
async function cClient(
  port: number,
  count: number,
  inFlight: number,
  resume = false,
): Promise<Figures> {
  const out = await new Deno.Command(cBinary, {
    args: [
      "client",
      caFile,
      String(port),
      String(count),
      String(inFlight),
      ...(resume ? ["resume"] : []),
    ],
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(
      `c_handshake failed: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  const [rate, p50, p99, resumedCount] = text.split(" ").map(Number);
  if (resume) {
    cResumed += resumedCount;
    cAttempted += count;
  }
  return { rate, p50, p99 };
}

await using stoqServer = await startServer("stoq");
await using denoServer = await startServer("deno");
await using cServer = await startServer("c");

await using stoqClient = new StoqEndpoint();
const denoClient = new Deno.QuicEndpoint({ hostname: "::", port: 0 });

const stoqOptions = {
  hostname: "::1",
  port: stoqServer.port,
  alpnProtocols: ["hs"],
  caCerts: [ca],
};
const denoOptions = {
  hostname: "::1",
  port: denoServer.port,
  alpnProtocols: ["hs"],
  caCerts: [ca],
  serverName: "localhost",
};
let resumed = 0;
let attempted = 0;
const clients: Record<
  string,
  (count: number, inFlight: number) => Promise<Figures>
> = {
  "STOQ cold": (count, inFlight) =>
    measure(count, inFlight, async () => {
      const conn = await stoqClient.connect({
        ...stoqOptions,
        resumption: false,
      });
      conn.close();
    }),
  "STOQ resumed": (count, inFlight) =>
    measure(count, inFlight, async () => {
      const conn = await stoqClient.connect(stoqOptions);
      attempted++;
      if (conn.resumed) resumed++;
      conn.close();
    }),
  "STOQ 0-RTT": (count, inFlight) =>
    measure(count, inFlight, async () => {
      // Timed until connect resolves: streams can carry data from then on (in the first
      // flight); the handshake completes behind it, before the next connect.
      const t = performance.now();
      const conn = await stoqClient.connect({ ...stoqOptions, zeroRtt: true });
      const usable = performance.now() - t;
      if (!conn.earlyData) throw new Error("the connect did not use 0-RTT");
      await conn.handshake;
      conn.close();
      return usable;
    }),
  "Deno cold": (count, inFlight) =>
    measure(count, inFlight, async () => {
      const conn = await Deno.connectQuic(denoOptions);
      conn.close();
    }),
  "Deno resumed": (count, inFlight) =>
    measure(count, inFlight, async () => {
      const conn = await Deno.connectQuic({
        ...denoOptions,
        endpoint: denoClient,
      });
      conn.close();
    }),
  "C over msquic": (count, inFlight) => cClient(cServer.port, count, inFlight),
  "C resumed": (count, inFlight) =>
    cClient(cServer.port, count, inFlight, true),
};

// Warm-up: JIT, library loading, the first session ticket.
for (const run of Object.values(clients)) await run(WARMUP, 1);
resumed =
  attempted =
  cResumed =
  cAttempted =
    0;

const modes = [
  {
    name: `sequential (${SEQUENTIAL} connects, one at a time)`,
    count: SEQUENTIAL,
    inFlight: 1,
  },
  {
    name: `${IN_FLIGHT} in flight (${CONCURRENT} connects)`,
    count: CONCURRENT,
    inFlight: IN_FLIGHT,
  },
];
const results = new Map<string, Figures[]>();
for (let round = 1; round <= ROUNDS; round++) {
  for (const mode of modes) {
    for (const [name, run] of Object.entries(clients)) {
      const f = await run(mode.count, mode.inFlight);
      const key = `${mode.name}\0${name}`;
      results.set(key, [...(results.get(key) ?? []), f]);
      console.log(
        `  round ${round}, ${mode.name}, ${name}: ${f.rate.toFixed(0)}/s, p50 ${
          f.p50.toFixed(2)
        } ms, p99 ${f.p99.toFixed(2)} ms`,
      );
    }
  }
}

const medians = (mode: string, name: string): Figures => {
  const runs = results.get(`${mode}\0${name}`)!;
  return {
    rate: median(runs.map((f) => f.rate)),
    p50: median(runs.map((f) => f.p50)),
    p99: median(runs.map((f) => f.p99)),
  };
};
for (const mode of modes) {
  console.log(`${mode.name}, medians of ${ROUNDS} rounds:`);
  for (const name of Object.keys(clients)) {
    const f = medians(mode.name, name);
    console.log(
      `  ${name.padEnd(14)} ${f.rate.toFixed(0).padStart(6)} connects/s   p50 ${
        f.p50.toFixed(2)
      } ms   p99 ${f.p99.toFixed(2)} ms`,
    );
  }
}
const [seq, conc] = modes.map((m) => m.name);
const ratio = (mode: string, a: string, b: string) =>
  (medians(mode, a).rate / medians(mode, b).rate).toFixed(2);
console.log(
  `STOQ cold/C: sequential ${
    ratio(seq, "STOQ cold", "C over msquic")
  }, ${IN_FLIGHT} in flight ${ratio(conc, "STOQ cold", "C over msquic")}`,
);
console.log(
  `STOQ cold/Deno cold ${IN_FLIGHT} in flight: ${
    ratio(conc, "STOQ cold", "Deno cold")
  }; ` +
    `STOQ resumed/Deno resumed: sequential ${
      ratio(seq, "STOQ resumed", "Deno resumed")
    }, ${IN_FLIGHT} in flight ${ratio(conc, "STOQ resumed", "Deno resumed")}`,
);
console.log(
  `STOQ resumed: ${
    (100 * resumed / attempted).toFixed(1)
  } % of its connects resumed`,
);
if (cResumed !== cAttempted) {
  throw new Error(`C resumed only ${cResumed} of ${cAttempted} connects`);
}
console.log(
  `STOQ resumed connect p50: ${
    medians(seq, "STOQ resumed").p50.toFixed(2)
  } ms (C over msquic resumed ${
    medians(seq, "C resumed").p50.toFixed(2)
  } ms; STOQ 0-RTT usable after ${
    medians(seq, "STOQ 0-RTT").p50.toFixed(2)
  } ms)`,
);
console.log(
  `STOQ/Deno handshake ratio: ${ratio(seq, "STOQ cold", "Deno cold")}`,
);
denoClient.close();
