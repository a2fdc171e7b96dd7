/**
 * The node's HTTP side, on `[metrics] listen_addr`:
 *
 * | path            | content                                                               |
 * | --------------- | --------------------------------------------------------------------- |
 * | `/metrics`      | Prometheus text format                                                |
 * | `/`             | the live dashboard (uPlot, served from the local npm cache)           |
 * | `/api/series`   | the dashboard's data: the last ten minutes, one sample a second       |
 * | `/healthz`      | `200 ok` while serving, `503 draining` during a shutdown              |
 * | `/root.pem`     | the CA's root certificate                                             |
 * | `/ct/…`         | the CA's transparency log as C2SP static-ct-api                       |
 *
 * @module
 */

import { StoqError } from "../errors.ts";
import type { Registry } from "npm:prom-client@15.1.3";
import {
  type CertificateAuthority,
  staticCtHandler,
} from "../trustchain/mod.ts";
import type { Series } from "./metrics.ts";

/** The uPlot build the dashboard uses, from npm. */
const UPLOT = "npm:uplot@1.6.32";

/** What the monitor serves. */
export interface MonitorSources {
  /** The metrics registry. */
  registry: Registry;
  /** The dashboard's history. */
  series(): Series;
  /** The header line of the dashboard. */
  status(): Record<string, unknown>;
  /** Whether the node is shutting down. */
  draining(): boolean;
  /** The CA. */
  ca: CertificateAuthority;
}

/** The dashboard's files: the page, its script and uPlot's script and style sheet. */
async function loadAssets(): Promise<Map<string, [string, string]>> {
  // Importing uPlot puts it in the module graph (and Deno's npm cache, with the lockfile's
  // hash), so that its files resolve to paths in the cache: no network when a page loads.
  await import("npm:uplot@1.6.32");
  const read = async (url: string | URL) => {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return await response.text();
  };
  const here = (name: string) =>
    new URL(`./dashboard/${name}`, import.meta.url);
  const uplot = (path: string) => import.meta.resolve(`${UPLOT}/dist/${path}`);
  return new Map<string, [string, string]>([
    ["/", ["text/html; charset=utf-8", await read(here("index.html"))]],
    [
      "/assets/dashboard.js",
      ["text/javascript; charset=utf-8", await read(here("dashboard.js"))],
    ],
    [
      "/assets/uPlot.iife.min.js",
      [
        "text/javascript; charset=utf-8",
        await read(uplot("uPlot.iife.min.js")),
      ],
    ],
    [
      "/assets/uPlot.min.css",
      ["text/css; charset=utf-8", await read(uplot("uPlot.min.css"))],
    ],
  ]);
}

/** A running monitor. */
export interface Monitor extends AsyncDisposable {
  /** Where it listens. */
  addr: { hostname: string; port: number };
  /** Stops serving. */
  close(): Promise<void>;
}

/**
 * Starts the HTTP server.
 *
 * @param at Address and TCP port.
 * @param sources What it serves.
 * @returns The running server.
 * @throws {StoqError} `ADDRESS_IN_USE` when the port is taken.
 */
export async function startMonitor(
  at: { hostname: string; port: number },
  sources: MonitorSources,
): Promise<Monitor> {
  const assets = await loadAssets();
  const ct = staticCtHandler(sources.ca, { prefix: "/ct/" });
  const handler = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", {
        status: 405,
        headers: { allow: "GET, HEAD" },
      });
    }
    if (path === "/metrics") {
      return new Response(await sources.registry.metrics(), {
        headers: { "content-type": sources.registry.contentType },
      });
    }
    if (path === "/healthz") {
      return sources.draining()
        ? new Response("draining\n", { status: 503 })
        : new Response("ok\n");
    }
    if (path === "/api/series") {
      return Response.json(
        { node: sources.status(), series: sources.series() },
        { headers: { "cache-control": "no-store" } },
      );
    }
    if (path === "/root.pem") {
      return new Response(sources.ca.rootPem, {
        headers: { "content-type": "application/x-pem-file" },
      });
    }
    if (path.startsWith("/ct/")) return await ct(req);
    const asset = assets.get(path);
    if (asset) {
      return new Response(asset[1], { headers: { "content-type": asset[0] } });
    }
    return new Response("not found\n", { status: 404 });
  };
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: at.hostname,
      port: at.port,
      onListen: () => {},
    }, handler);
  } catch (cause) {
    if (cause instanceof Deno.errors.AddrInUse) {
      throw new StoqError(
        "ADDRESS_IN_USE",
        `Cannot serve metrics on [${at.hostname}]:${at.port}: the port is taken; set another [metrics] listen_addr or --metrics-port`,
        { cause },
      );
    }
    throw cause;
  }
  let closing: Promise<void> | undefined;
  const close = () => closing ??= server.shutdown();
  return {
    addr: { hostname: at.hostname, port: server.addr.port },
    close,
    [Symbol.asyncDispose]: close,
  };
}
