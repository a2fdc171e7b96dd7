/**
 * A lossy network for tests and benchmarks: {@linkcode LossyRelay} starts `build/lossy_relay`
 * (`testing/lossy_relay.c`, built by `make relay`) as its own process and drives it. The
 * relay listens on `::1`; a client connects to `relay.port` instead of the server's port and
 * every datagram between them passes through it, dropped, delayed, reordered, duplicated or
 * black-holed as commanded. Each command resolves once it is in force, so tests need no sleeps.
 *
 * The relay is a C program so that it forwards far faster than the paths it simulates and
 * takes little CPU from the endpoints it sits between (`bench/loss.ts` reports its counters).
 *
 * @example A 5 % lossy path with 20 ms each way
 * ```ts ignore
 * await using relay = await LossyRelay.start({ targetPort: listener.addr.port });
 * await relay.impair({ loss: 0.05, delayMs: 20 });
 * const conn = await client.connect({ hostname: "::1", port: relay.port, ... });
 * await relay.blackhole("both"); // from now on nothing gets through
 * ```
 *
 * @module
 */

/** Which way an impairment applies: `up` is client → server, `down` server → client. */
export type RelayDirection = "up" | "down" | "both";

/** What the relay does to the datagrams of one direction. Unset fields keep their value. */
export interface Impairment {
  /**
   * Probability (0..1) that a datagram is dropped.
   * @default {0}
   */
  loss?: number;
  /**
   * Probability (0..1) that a datagram is sent twice.
   * @default {0}
   */
  duplicate?: number;
  /**
   * Probability (0..1) that a datagram is held `reorderDelayMs` longer, so later ones overtake it.
   * @default {0}
   */
  reorder?: number;
  /**
   * Extra hold, in milliseconds, of a reordered datagram.
   * @default {0}
   */
  reorderDelayMs?: number;
  /**
   * One-way delay in milliseconds (half the round-trip time when set on both directions).
   * @default {0}
   */
  delayMs?: number;
  /**
   * Bottleneck rate in Mbit/s; 0 means unlimited.
   * @default {0}
   */
  rateMbps?: number;
  /**
   * Drop-tail limit, in bytes, of the bottleneck's queue; 0 means unlimited.
   * @default {0}
   */
  queueBytes?: number;
}

/** Counters of one direction. */
export interface RelayDirectionStats {
  received: number;
  forwarded: number;
  bytesForwarded: number;
  lost: number;
  blackholed: number;
  duplicated: number;
  reordered: number;
  queueDrops: number;
  sendErrors: number;
}

/** The relay's counters. */
export interface RelayStats {
  /** Client addresses seen (each gets its own socket towards the server). */
  flows: number;
  /** Datagrams waiting for their release time. */
  queued: number;
  /** Datagrams the kernel dropped on the relay's full receive buffers (must stay 0). */
  socketDrops: number;
  truncated: number;
  flowsRefused: number;
  queueFull: number;
  up: RelayDirectionStats;
  down: RelayDirectionStats;
}

/** Options for {@linkcode LossyRelay.start}. */
export interface LossyRelayOptions {
  /** The server's UDP port on `::1`. */
  targetPort: number;
  /**
   * Seed of the relay's random choices.
   * @default {1}
   */
  seed?: number;
  /**
   * The relay program.
   * @default {"build/lossy_relay of this checkout"}
   */
  binary?: string;
}

const KEYS: Record<keyof Impairment, [string, number, number]> = {
  loss: ["loss", 0, 1],
  duplicate: ["dup", 0, 1],
  reorder: ["reorder", 0, 1],
  reorderDelayMs: ["reorder_delay", 0, 60000],
  delayMs: ["delay", 0, 60000],
  rateMbps: ["rate", 0, 1e6],
  queueBytes: ["queue", 0, 1e9],
};

const DIRECTIONS = ["up", "down", "both"];

/** A running relay process; close it (or `await using` it) to stop it. */
export class LossyRelay implements AsyncDisposable {
  /** The relay's UDP port on `::1`: connect here instead of to the server. */
  readonly port: number;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;
  #queue: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;

  private constructor(
    port: number,
    child: Deno.ChildProcess,
    lines: AsyncIterator<string>,
  ) {
    this.port = port;
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#lines = lines;
  }

  /**
   * Starts a relay in front of `[::1]:targetPort` that forwards everything unchanged until told
   * otherwise.
   *
   * @throws {Error} when the relay program is missing (build it with `make relay`) or exits.
   */
  static async start(options: LossyRelayOptions): Promise<LossyRelay> {
    const { targetPort, seed = 1 } = options;
    if (!Number.isInteger(targetPort) || targetPort < 1 || targetPort > 65535) {
      throw new RangeError(
        `Cannot start the relay as 'targetPort' must be an integer from 1 to 65535: current value is ${targetPort}`,
      );
    }
    if (!Number.isInteger(seed) || seed < 1) {
      throw new RangeError(
        `Cannot start the relay as 'seed' must be a positive integer: current value is ${seed}`,
      );
    }
    const binary = options.binary ??
      new URL("../build/lossy_relay", import.meta.url).pathname;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(binary, {
        args: [String(targetPort), String(seed)],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
    } catch (err) {
      throw new Error(
        `Cannot start the relay: ${binary} did not run; build it with \`make relay\``,
        { cause: err },
      );
    }
    const lines = readLines(child.stdout);
    const first = await lines.next();
    const match = first.done ? null : /^port (\d+)$/.exec(first.value);
    if (!match) {
      child.kill();
      await child.status;
      throw new Error(
        `Cannot start the relay: ${binary} said ${
          JSON.stringify(first.value ?? "nothing")
        } instead of its port`,
      );
    }
    return new LossyRelay(Number(match[1]), child, lines);
  }

  /** Sets the impairment of `direction`; resolves once it applies to every datagram. */
  impair(
    impairment: Impairment,
    direction: RelayDirection = "both",
  ): Promise<void> {
    checkDirection(direction);
    const words: string[] = [];
    for (const [field, value] of Object.entries(impairment)) {
      const spec = KEYS[field as keyof Impairment];
      if (!spec) {
        throw new TypeError(
          `Cannot impair the relay as '${field}' is not one of ${
            Object.keys(KEYS).join(", ")
          }`,
        );
      }
      if (value === undefined) continue;
      const [key, min, max] = spec;
      if (typeof value !== "number" || !(value >= min && value <= max)) {
        throw new RangeError(
          `Cannot impair the relay as '${field}' must be a number from ${min} to ${max}: current value is ${
            String(value)
          }`,
        );
      }
      words.push(`${key}=${value}`);
    }
    return this.#command(`set ${direction} ${words.join(" ")}`).then(() => {});
  }

  /** Drops every datagram of `direction`, including those already delayed in the relay. */
  blackhole(direction: RelayDirection = "both"): Promise<void> {
    checkDirection(direction);
    return this.#command(`blackhole ${direction}`).then(() => {});
  }

  /** Ends every black hole. */
  restore(): Promise<void> {
    return this.#command("blackhole off").then(() => {});
  }

  /** The relay's counters. */
  async stats(): Promise<RelayStats> {
    const reply = await this.#command("stats");
    return JSON.parse(reply.slice("stats ".length)) as RelayStats;
  }

  /** Stops the relay process. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#queue.catch(() => {});
      await this.#stdin.close().catch(() => {});
      await this.#child.status;
      // Let the line reader finish so the stdout resource is released.
      while (!(await this.#lines.next()).done);
    })();
    return this.#closing;
  }

  /** Same as {@linkcode LossyRelay.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Sends one command and resolves with its reply; commands run one at a time, in order. */
  #command(line: string): Promise<string> {
    if (this.#closing) {
      return Promise.reject(
        new Error("Cannot command the relay: it is closed"),
      );
    }
    const run = async () => {
      await this.#stdin.write(new TextEncoder().encode(`${line}\n`));
      const reply = await this.#lines.next();
      if (reply.done) {
        throw new Error(`The relay exited while running '${line}'`);
      }
      if (reply.value.startsWith("error ")) {
        throw new Error(`The relay refused '${line}': ${reply.value.slice(6)}`);
      }
      return reply.value;
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return result;
  }
}

function checkDirection(direction: string): void {
  if (!DIRECTIONS.includes(direction)) {
    throw new RangeError(
      `Cannot command the relay as 'direction' must be "up", "down" or "both": current value is ${
        JSON.stringify(direction)
      }`,
    );
  }
}

async function* readLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let buffered = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffered += text;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
    }
  }
}
