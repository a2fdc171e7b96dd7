/**
 * The node's configuration: the schema's defaults and checks, what a reload may change, the
 * README's reference, and bad files ending the process with one line (exit 1).
 */
import assert from "node:assert/strict";
import { StoqError } from "../mod.ts";
import {
  configChanges,
  parseNodeConfig,
  transportOptions,
} from "../src/node/config/load.ts";
import {
  configReference,
  REFERENCE_MARKERS,
  spliceReference,
} from "../src/node/config/reference.ts";
import { NODE_SECTIONS } from "../src/node/config/schema.ts";
import { tempDir } from "./_node.ts";

const MAIN = new URL("../src/node/main.ts", import.meta.url).pathname;

function configError(text: string, path = "node.toml"): string {
  try {
    parseNodeConfig(text, path);
  } catch (err) {
    assert.ok(err instanceof StoqError, String(err));
    assert.equal(err.code, "CONFIG_INVALID");
    return err.message;
  }
  assert.fail(`accepted:\n${text}`);
}

Deno.test("node config: no file means the documented defaults", () => {
  const { config } = parseNodeConfig(undefined);
  assert.equal(config.network.listen_addr, "[::]:8443");
  assert.equal(config.network.max_connections, 10_000);
  assert.deepEqual(config.network.alpn, [
    "stoq-echo",
    "stoq-sink",
    "trustchain/1",
  ]);
  assert.equal(config.metrics.listen_addr, "[::1]:9464");
  assert.equal(config.log.level, "info");
  assert.equal(config.trustchain.name, "stoq-node");
  assert.equal(config.node.shutdown_deadline_ms, 30_000);
  assert.equal(transportOptions(config).congestionControl, "cubic");
  assert.equal(transportOptions(config).streamReceiveWindow, 1 << 20);
});

Deno.test("node config: the seed's keys are read, high_performance means BBR and large windows", () => {
  const { config } = parseNodeConfig(
    `[network]\nlisten_addr = "[::1]:9000"\nmax_connections = 100000\nquic_config = "high_performance"\n`,
    "node.toml",
    { port: 0 },
  );
  assert.equal(config.network.listen_addr, "[::1]:0");
  assert.equal(config.network.max_connections, 100_000);
  const t = transportOptions(config);
  assert.equal(t.congestionControl, "bbr");
  assert.equal(t.streamReceiveWindow, 8 << 20);
  assert.equal(t.connectionReceiveWindow, 64 << 20);
});

Deno.test("node config: config/node.toml is a valid configuration of the defaults", async () => {
  const file = new URL("../config/node.toml", import.meta.url).pathname;
  const { config } = parseNodeConfig(await Deno.readTextFile(file), file);
  assert.deepEqual(config, parseNodeConfig(undefined).config);
});

Deno.test("node config: bad files name the file, line, key, value and what is allowed", () => {
  assert.match(
    configError(`[network]\nlisten_addr = "[::]:8443"\nmax_conections = 5\n`),
    /^node\.toml:3: unknown key 'max_conections' in \[network\]; allowed keys: listen_addr, max_connections, /,
  );
  assert.match(
    configError(`[network]\n\n[routing]\nalgorithm = "ml_optimized"\n`),
    /^node\.toml:3: section \[routing\] is not a transport setting: routing belongs to the application layer/,
  );
  assert.match(
    configError(`[chunking]\nmin_chunk_size = "64KB"\n`),
    /section \[chunking\]/,
  );
  assert.match(
    configError(`[network]\nmax_connections = "lots"\n`),
    /^node\.toml:2: 'max_connections' in \[network\] is "lots", but must be an integer from 1 to 1000000$/,
  );
  assert.match(
    configError(`[network]\nlisten_addr = "0.0.0.0:8443"\n`),
    /^node\.toml:2: 'listen_addr' in \[network\] is "0\.0\.0\.0:8443", but must be an IPv6 address .*IPv4/,
  );
  assert.match(
    configError(`[network]\nlisten_addr = "[::ffff:10.0.0.1]:8443"\n`),
    /'listen_addr' in \[network\] is "\[::ffff:10\.0\.0\.1\]:8443"/,
  );
  assert.match(
    configError(`[network]\nlisten_addr = "[::]:70000"\n`),
    /'listen_addr' in \[network\] is "\[::\]:70000", but must be an IPv6 address and a port from 0 to 65535/,
  );
  assert.match(
    configError(`[network]\nalpn = ["stoq-echo", "http/1.1"]\n`),
    /'alpn' in \[network\] is \["stoq-echo","http\/1\.1"\], but must be an array of values from "stoq-echo", "stoq-sink", "trustchain\/1"/,
  );
  assert.match(
    configError(`[log]\nlevel = "verbose"\n`),
    /'level' in \[log\] is "verbose", but must be one of "debug", "info", "warn", "error"/,
  );
  assert.match(
    configError(`[metrics]\nlisten_addr = "127.0.0.1:9464"\n`),
    /'listen_addr' in \[metrics\]/,
  );
  assert.match(
    configError(`[edge]\n`),
    /section \[edge\] is not a transport setting/,
  );
  assert.match(
    configError(`[tls]\ndev_cert_dir = "x"\n`),
    /^node\.toml:1: unknown section \[tls\]; allowed sections: \[network\], \[trustchain\], \[metrics\], \[log\], \[node\]$/,
  );
  assert.match(
    configError(`port = 8443\n`),
    /^node\.toml:1: unknown key 'port' outside any section/,
  );
  assert.throws(
    () => parseNodeConfig(undefined, undefined, { port: 70000 }),
    /--port must be an integer from 0 to 65535: current value is 70000/,
  );
});

Deno.test("node config: a reload knows which changes apply live and which need a restart", () => {
  const before = parseNodeConfig(`[network]\nmax_connections = 10\n`).config;
  const after = parseNodeConfig(
    `[network]\nmax_connections = 20\nlisten_addr = "[::1]:9999"\nstream_receive_window = 65536\n[log]\nlevel = "debug"\n`,
  ).config;
  assert.deepEqual(configChanges(before, after), {
    live: [
      "network.max_connections",
      "network.stream_receive_window",
      "log.level",
    ],
    restart: ["network.listen_addr"],
  });
  assert.deepEqual(configChanges(before, before), { live: [], restart: [] });
});

Deno.test("node config: every key says how it reloads, and the README's reference is the schema's", async () => {
  for (const [name, section] of Object.entries(NODE_SECTIONS)) {
    for (const [key, schema] of Object.entries(section.properties ?? {})) {
      assert.ok(
        schema.reload === "live" || schema.reload === "restart",
        `[${name}] ${key}`,
      );
      assert.ok(schema.description, `[${name}] ${key} has no description`);
    }
  }
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  const reference = configReference();
  for (const name of Object.keys(NODE_SECTIONS)) {
    assert.ok(reference.includes(`#### \`[${name}]\``), name);
  }
  // The README holds the reference as `deno task config:reference` writes it (then deno fmt).
  await using dir = await tempDir();
  const file = `${dir.path}/README.md`;
  await Deno.writeTextFile(file, spliceReference(readme));
  const fmt = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", file],
  }).output();
  assert.ok(fmt.success, new TextDecoder().decode(fmt.stderr));
  assert.ok(readme.includes(REFERENCE_MARKERS.start));
  assert.equal(
    await Deno.readTextFile(file),
    readme,
    "README.md's configuration reference is out of date: run `deno task config:reference`",
  );
});

/** Runs the node's command line and returns its exit code and output. */
async function runNode(args: string[], home: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-net", MAIN, ...args],
    env: { STOQ_HOME: home, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("serve: each bad config exits 1 with one line naming the key, and no stack", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/node.toml`;
  const cases: [string, RegExp][] = [
    [
      `[network]\nmax_conections = 5\n`,
      /node\.toml:2: unknown key 'max_conections' in \[network\]; allowed keys: /,
    ],
    [
      `[routing]\nalgorithm = "ml_optimized"\n`,
      /node\.toml:1: section \[routing\] is not a transport setting/,
    ],
    [
      `[network]\nmax_connections = -3\n`,
      /node\.toml:2: 'max_connections' in \[network\] is -3, but must be an integer from 1/,
    ],
    [
      `[network]\nlisten_addr = "0.0.0.0:8443"\n`,
      /node\.toml:2: 'listen_addr' in \[network\] is "0\.0\.0\.0:8443", but must be an IPv6 address/,
    ],
    [
      `[trustchain]\nfederation_bundle = "${dir.path}/missing.json"\n`,
      /node\.toml:2: 'federation_bundle' in \[trustchain\] is ".*missing\.json", which cannot be read/,
    ],
  ];
  for (const [text, pattern] of cases) {
    await Deno.writeTextFile(file, text);
    const r = await runNode([
      "--config",
      file,
      "--port",
      "0",
      "--metrics-port",
      "0",
    ], dir.path);
    assert.equal(r.code, 1, `${text}\n${r.stdout}${r.stderr}`);
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `one line expected:\n${r.stderr}`);
    assert.match(lines[0], /^stoq node: CONFIG_INVALID: /);
    assert.match(lines[0], pattern);
    assert.doesNotMatch(r.stderr, /\s+at /);
  }
  const port = await runNode(["--port", "70000"], dir.path);
  assert.equal(port.code, 1);
  assert.equal(
    port.stderr,
    'stoq node: CONFIG_INVALID: --port must be an integer from 0 to 65535: current value is "70000"\n',
  );
  const flag = await runNode(["--conifg", file], dir.path);
  assert.equal(flag.code, 1);
  assert.match(flag.stderr, /^stoq node: CONFIG_INVALID: .*--conifg.*usage: /);
  const missing = await runNode(
    ["--config", `${dir.path}/nope.toml`],
    dir.path,
  );
  assert.equal(missing.code, 1);
  assert.match(
    missing.stderr,
    /nope\.toml: cannot read the file/,
  );
});
