/**
 * Helpers for the node tests: a STOQ node in its own process (started as `deno task serve` or
 * through `src/node/main.ts`), its log read line by line, and echo clients that trust the node's
 * CA.
 *
 * @module
 */

import type {
  StoqConnection,
  StoqConnectOptions,
  StoqEndpoint,
} from "../mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MAIN = new URL("../src/node/main.ts", import.meta.url).pathname;

/** One parsed log line. */
export type LogEvent = Record<string, unknown> & { event: string };

/** Options for {@linkcode NodeProcess.start}. */
export interface NodeProcessOptions {
  /** Arguments after the script (or the task). */
  args?: string[];
  /** Run `deno task serve` instead of `deno run src/node/main.ts`. */
  task?: boolean;
  /** STOQ_HOME for the node (its default data directory lives there). */
  home: string;
}

/** A node process and its log. */
export class NodeProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly events: LogEvent[] = [];
  readonly lines: string[] = [];
  stderr = "";
  #waiters: {
    match: (e: LogEvent) => boolean;
    resolve: (e: LogEvent) => void;
  }[] = [];
  #reading: Promise<void>;
  #started!: LogEvent;

  private constructor(child: Deno.ChildProcess) {
    this.child = child;
    this.#reading = this.#read();
    (async () => {
      for await (
        const chunk of child.stderr.pipeThrough(new TextDecoderStream())
      ) this.stderr += chunk;
    })();
  }

  /** Starts a node and (by default) waits until it listens. */
  static async start(options: NodeProcessOptions): Promise<NodeProcess> {
    const args = options.task
      ? ["task", "--quiet", "serve", ...(options.args ?? [])]
      : ["run", "-A", "--unstable-net", MAIN, ...(options.args ?? [])];
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: ROOT,
      env: { STOQ_HOME: options.home, NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const node = new NodeProcess(child);
    node.#started = await node.waitFor("node.started", () => true, 120_000);
    return node;
  }

  async #read(): Promise<void> {
    let buffered = "";
    for await (
      const chunk of this.child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      buffered += chunk;
      let i;
      while ((i = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        this.lines.push(line);
        let event: LogEvent;
        try {
          event = JSON.parse(line);
        } catch {
          continue;
        }
        this.events.push(event);
        this.#waiters = this.#waiters.filter((w) => {
          if (!w.match(event)) return true;
          w.resolve(event);
          return false;
        });
      }
    }
  }

  /** The `node.started` event. */
  get started(): LogEvent {
    return this.#started;
  }

  /** The QUIC port. */
  get port(): number {
    return this.started.port as number;
  }

  /** The HTTP port. */
  get metricsPort(): number {
    return this.started.metrics_port as number;
  }

  /** The CA root the node wrote to its data directory. */
  root(): Promise<string> {
    return Deno.readTextFile(this.started.root_file as string);
  }

  /** `http://[::1]:<metrics port><path>`. */
  url(path: string): string {
    return `http://[::1]:${this.metricsPort}${path}`;
  }

  /**
   * The next event named `event` that `match` accepts (one already logged counts when it
   * arrived after `after` events).
   */
  waitFor(
    event: string,
    match: (e: LogEvent) => boolean = () => true,
    timeoutMs = 30_000,
    after = 0,
  ): Promise<LogEvent> {
    const test = (e: LogEvent) => e.event === event && match(e);
    const seen = this.events.slice(after).find(test);
    if (seen) return Promise.resolve(seen);
    const waiter = Promise.withResolvers<LogEvent>();
    this.#waiters.push({ match: test, resolve: waiter.resolve });
    const timer = setTimeout(
      () =>
        waiter.reject(
          new Error(
            `no ${event} within ${timeoutMs} ms; log:\n${
              this.lines.join("\n")
            }\n${this.stderr}`,
          ),
        ),
      timeoutMs,
    );
    return waiter.promise.finally(() => clearTimeout(timer));
  }

  /** Sends a signal. */
  kill(signal: Deno.Signal): void {
    this.child.kill(signal);
  }

  /** Waits for the process to exit. */
  async status(): Promise<Deno.CommandStatus> {
    const status = await this.child.status;
    await this.#reading;
    return status;
  }

  /** Stops the node (SIGTERM) unless it has exited. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await this.status();
  }
}

/** A connection from `endpoint` to the node, trusting `root` and naming the node `localhost`. */
export async function connectNode(
  endpoint: StoqEndpoint,
  port: number,
  root: string,
  alpn = "stoq-echo",
  options: Partial<StoqConnectOptions> = {},
): Promise<StoqConnection> {
  return await endpoint.connect({
    hostname: "::1",
    port,
    alpnProtocols: [alpn],
    caCerts: [root],
    serverName: "localhost",
    ...options,
  });
}

/** A fresh temporary directory, removed by `await using`. */
export async function tempDir(
  prefix = "stoq-node-",
): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}
