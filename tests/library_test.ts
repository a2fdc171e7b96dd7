/**
 * Finding the native library: imported from a URL (this checkout served over HTTP on ::1), STOQ
 * uses the per-user cache that `make native` installs into; an explicit path is used alone; a
 * failure names every path tried, or the missing libmsquic.
 */
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);
const built = new URL("../build/lib/", import.meta.url).pathname;

/** Serves this checkout's files over HTTP on ::1 (what `<url>/mod.ts` users import). */
function serveCheckout(): Deno.HttpServer<Deno.NetAddr> & { url: string } {
  const server = Deno.serve(
    { hostname: "::1", port: 0, onListen: () => {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (path.includes("..")) return new Response("no", { status: 400 });
      try {
        const body = await Deno.readFile(new URL(`.${path}`, root));
        return new Response(body, {
          headers: { "content-type": "application/typescript" },
        });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  return Object.assign(server, {
    url: `http://[::1]:${server.addr.port}`,
  });
}

/** Runs `code` in a fresh Deno with `env`; returns its exit status and output. */
async function run(code: string, env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-lock", "--unstable-net", "--allow-import", code],
    env,
  }).output();
  const text = new TextDecoder().decode(out.stdout) +
    new TextDecoder().decode(out.stderr);
  return { success: out.success, text };
}

async function cacheWith(files: string[]): Promise<string> {
  const cache = await Deno.makeTempDir({ prefix: "stoq-cache-" });
  const abi = /#define STOQ_ABI_VERSION (\d+)u/.exec(
    await Deno.readTextFile(new URL("../native/stoq.h", import.meta.url)),
  )![1];
  const dir = `${cache}/stoq/lib/abi-${abi}`;
  await Deno.mkdir(dir, { recursive: true });
  for (const f of files) await Deno.copyFile(`${built}${f}`, `${dir}/${f}`);
  return cache;
}

const useEndpoint = (mod: string) => `
  import { StoqEndpoint, StoqError } from "${mod}";
  try {
    await using ep = new StoqEndpoint();
    console.log("opened", ep.nativeCounts().connections);
  } catch (e) {
    console.log(e instanceof StoqError ? e.code : "other", e.message);
    Deno.exit(3);
  }`;

Deno.test("imported from a URL, STOQ loads the libraries from the per-user cache", async () => {
  await using server = serveCheckout();
  const cache = await cacheWith(["libstoq.so", "libmsquic.so.2"]);
  try {
    const r = await run(useEndpoint(`${server.url}/mod.ts`), {
      XDG_CACHE_HOME: cache,
      STOQ_LIB: "",
    });
    assert.ok(r.success, r.text);
    assert.match(r.text, /opened 0/);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("with nothing installed, the error names every path tried and how to build", async () => {
  await using server = serveCheckout();
  const cache = await cacheWith([]);
  try {
    const r = await run(useEndpoint(`${server.url}/mod.ts`), {
      XDG_CACHE_HOME: cache,
    });
    assert.equal(r.success, false);
    assert.match(r.text, /LIBRARY_NOT_FOUND/);
    assert.match(
      r.text,
      new RegExp(`${cache}/stoq/lib/abi-\\d+/libstoq.so \\(missing\\)`),
    );
    assert.match(r.text, /make native/);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("a libstoq.so whose libmsquic is missing says so", async () => {
  await using server = serveCheckout();
  const cache = await cacheWith(["libstoq.so"]);
  try {
    const r = await run(useEndpoint(`${server.url}/mod.ts`), {
      XDG_CACHE_HOME: cache,
    });
    assert.equal(r.success, false);
    assert.match(
      r.text,
      /LIBRARY_NOT_FOUND .*was found, but libmsquic\.so\.2 it needs could not be loaded/,
    );
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("a wrong explicit path is an error, not a fall-back", async () => {
  const mod = new URL("../mod.ts", import.meta.url).href;
  // The option.
  let r = await run(
    `import { StoqEndpoint } from "${mod}";
     try { new StoqEndpoint({ library: "/nonexistent/libstoq.so" }); } catch (e) {
       console.log(e.code, e.message); Deno.exit(3); }`,
    {},
  );
  assert.equal(r.success, false);
  assert.match(
    r.text,
    /LIBRARY_NOT_FOUND .*\/nonexistent\/libstoq\.so \(given by the 'library' option\): no such file/,
  );
  // The environment variable, even though build/lib has a good one.
  r = await run(useEndpoint(mod), { STOQ_LIB: "/nonexistent/libstoq.so" });
  assert.equal(r.success, false);
  assert.match(r.text, /given by \$STOQ_LIB/);
  // A file that is not a library.
  r = await run(useEndpoint(mod), {
    STOQ_LIB: new URL("../README.md", import.meta.url).pathname,
  });
  assert.equal(r.success, false);
  assert.match(
    r.text,
    /LIBRARY_NOT_FOUND .*README\.md \(given by \$STOQ_LIB\)/,
  );
});
