/**
 * Shared by the Phoenix benches: a peer app in its own process, with a per-user CA in a
 * temporary data directory both sides use.
 *
 * @module
 */

/** A running peer process. */
export interface Peer extends AsyncDisposable {
  /** `[::1]:port` */
  target: string;
  /** The data directory of the shared per-user CA. */
  home: string;
}

/**
 * Starts the peer: bench/_phoenix_peer.ts in its own process, or in this one with
 * `STOQ_BENCH_PEER=in-process`.
 */
export async function startPeer(highPerformance = false): Promise<Peer> {
  const home = await Deno.makeTempDir({ prefix: "stoq-bench-" });
  Deno.env.set("STOQ_HOME", home);
  if (Deno.env.get("STOQ_BENCH_PEER") === "in-process") {
    const { Phoenix } = await import("../mod.ts");
    const app = await Phoenix.create("bench-peer", {
      listen: { hostname: "::1", port: 0 },
      highPerformance,
      maxMessageSize: 1024 * 1024 * 1024,
      maxConnections: 1000,
    });
    (async () => {
      for await (const _ of app.messages) { /* counted */ }
    })();
    (async () => {
      for await (const s of app.streams) {
        (async () => {
          for await (const _ of s.readable) { /* counted */ }
        })().catch(() => {});
      }
    })();
    return {
      target: `[::1]:${app.addr.port}`,
      home,
      async [Symbol.asyncDispose]() {
        await app.close();
        await Deno.remove(home, { recursive: true });
      },
    };
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      new URL("./_phoenix_peer.ts", import.meta.url).pathname,
      ...(highPerformance ? ["--high-performance"] : []),
    ],
    env: { STOQ_HOME: home },
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the peer exited before listening");
    line += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return {
    target: `[::1]:${Number(line.trim())}`,
    home,
    async [Symbol.asyncDispose]() {
      child.kill();
      await child.status;
      await Deno.remove(home, { recursive: true });
    },
  };
}

/** The middle value. */
export function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}
