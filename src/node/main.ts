/**
 * `deno task serve`: runs a STOQ node.
 *
 * ```sh
 * deno task serve [--config FILE] [--port N] [--metrics-port N] [--data-dir DIR]
 * ```
 *
 * Without `--config`, the defaults: QUIC on `[::]:8443`, metrics on `[::1]:9464`, data in
 * `$STOQ_HOME/node` (else `~/.local/share/stoq/node`). Logs are JSON lines on standard output;
 * the first, `node.started`, names the CA root's SHA-256 (`root_sha256`) and file. SIGHUP or a
 * change to the file reloads the configuration; SIGINT or SIGTERM shuts down gracefully (a second
 * one stops at once). A configuration or start-up error prints one line on standard error and
 * exits 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { StoqError } from "../errors.ts";
import { loadNodeConfig, type NodeOverrides } from "./config/load.ts";
import { watchConfig } from "./config/watch.ts";
import { StoqNode } from "./node.ts";

const USAGE =
  "usage: deno task serve [--config FILE] [--port N] [--metrics-port N] [--data-dir DIR]";

/** Exits 1 with one line on standard error (a stack only with STOQ_DEBUG=1). */
function fail(err: unknown): never {
  if (Deno.env.get("STOQ_DEBUG") === "1") console.error(err);
  const text = err instanceof StoqError
    ? `${err.code}: ${err.message}`
    : `unexpected error: ${err instanceof Error ? err.message : String(err)}`;
  console.error(`stoq node: ${text.replaceAll("\n", " ")}`);
  Deno.exit(1);
}

function port(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
    throw new StoqError(
      "CONFIG_INVALID",
      `${flag} must be an integer from 0 to 65535: current value is ${
        JSON.stringify(value)
      }`,
    );
  }
  return Number(value);
}

/** Parses the command line. */
function parseCommandLine(
  args: string[],
): { config?: string; overrides: NodeOverrides; help: boolean } {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string" },
        port: { type: "string" },
        "metrics-port": { type: "string" },
        "data-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new StoqError(
      "CONFIG_INVALID",
      `${(err as Error).message.split("\n")[0]}; ${USAGE}`,
    );
  }
  return {
    config: values.config,
    help: values.help === true,
    overrides: {
      port: port("--port", values.port),
      metricsPort: port("--metrics-port", values["metrics-port"]),
      dataDir: values["data-dir"],
    },
  };
}

if (import.meta.main) {
  let node: StoqNode;
  let command: ReturnType<typeof parseCommandLine>;
  try {
    command = parseCommandLine(Deno.args);
    if (command.help) {
      console.log(USAGE);
      Deno.exit(0);
    }
    node = await StoqNode.start(
      await loadNodeConfig(command.config, command.overrides),
    );
  } catch (err) {
    fail(err);
  }
  // Reloads run one at a time, in order; a failed one is logged and the running config stays.
  const watcher = watchConfig(command.config, () => {
    node.reload(loadNodeConfig(command.config, command.overrides)).catch(
      () => {},
    );
  });
  let signals = 0;
  const stop = (signal: Deno.Signal) => {
    if (++signals > 1) {
      console.error(`stoq node: ${signal} again: stopping at once`);
      Deno.exit(1);
    }
    watcher[Symbol.dispose]();
    node.shutdown(signal).then(() => Deno.exit(0), fail);
  };
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  await node.done;
}
