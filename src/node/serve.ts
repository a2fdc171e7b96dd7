/**
 * `deno task serve`: a STOQ echo node. Every bidirectional stream is echoed back, every
 * datagram is returned, unidirectional streams are drained. Development certificates are made
 * on first run; clients trust `<dev_cert_dir>/ca.pem`.
 *
 * Usage: `deno task serve [--config config/node.toml] [--port N]`
 *
 * @module
 */

import { makeDevCertificates } from "./dev_cert.ts";
import { DEFAULT_CONFIG, type NodeConfig, parseNodeConfig } from "./config.ts";
import {
  type StoqConnection,
  StoqEndpoint,
  type StoqListener,
} from "../transport/mod.ts";

/** PEM files of the development certificates, made on first use. */
export async function loadDevCertificates(
  dir: string,
): Promise<{ ca: string; cert: string; key: string }> {
  const files = {
    ca: `${dir}/ca.pem`,
    cert: `${dir}/cert.pem`,
    key: `${dir}/key.pem`,
  };
  try {
    return {
      ca: await Deno.readTextFile(files.ca),
      cert: await Deno.readTextFile(files.cert),
      key: await Deno.readTextFile(files.key),
    };
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const made = await makeDevCertificates({
    dns: ["localhost"],
    ip: ["::1"],
    days: 365,
  });
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(files.ca, made.ca);
  await Deno.writeTextFile(files.cert, made.cert);
  await Deno.writeTextFile(files.key, made.key, { mode: 0o600 });
  return made;
}

async function echo(conn: StoqConnection): Promise<void> {
  const streams = (async () => {
    for await (
      const { readable, writable } of conn.incomingBidirectionalStreams
    ) {
      readable.pipeTo(writable).catch(
        () => {/* the peer reset or left; nothing to echo */},
      );
    }
  })();
  const uni = (async () => {
    for await (const readable of conn.incomingUnidirectionalStreams) {
      readable.pipeTo(new WritableStream()).catch(() => {});
    }
  })();
  const datagrams = (async () => {
    while (true) conn.sendDatagram(await conn.readDatagram()).catch(() => {});
  })();
  await Promise.allSettled([streams, uni, datagrams, conn.closed]);
}

/** A running echo node. */
export interface EchoNode {
  endpoint: StoqEndpoint;
  listener: StoqListener;
  /** Resolves when the node has stopped. */
  done: Promise<void>;
}

/**
 * Starts an echo node with `config`.
 *
 * @example
 * ```ts ignore
 * import { startEchoNode } from "./serve.ts";
 * const node = await startEchoNode({ ...DEFAULT_CONFIG, port: 0 });
 * await node.endpoint.close();
 * ```
 */
export async function startEchoNode(config: NodeConfig): Promise<EchoNode> {
  const tls = await loadDevCertificates(config.devCertDir);
  const endpoint = new StoqEndpoint({
    hostname: config.hostname,
    port: config.port,
  });
  const listener = endpoint.listen({
    alpnProtocols: config.alpn,
    cert: tls.cert,
    key: tls.key,
    congestionControl: config.congestionControl,
    maxIdleTimeout: config.idleTimeoutMs,
  });
  const done = (async () => {
    for await (const conn of listener) echo(conn);
  })();
  return { endpoint, listener, done };
}

if (import.meta.main) {
  const args = [...Deno.args];
  let config = DEFAULT_CONFIG;
  const at = args.indexOf("--config");
  if (at >= 0) config = parseNodeConfig(await Deno.readTextFile(args[at + 1]));
  const portAt = args.indexOf("--port");
  if (portAt >= 0) config = { ...config, port: Number(args[portAt + 1]) };
  const node = await startEchoNode(config);
  console.log(
    `STOQ echo node on [${node.listener.addr.hostname}]:${node.listener.addr.port} ` +
      `ALPN ${
        config.alpn.join(",")
      }; clients trust ${config.devCertDir}/ca.pem`,
  );
  const stop = () => {
    console.log("stopping");
    node.endpoint.close().then(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await node.done;
}
