/**
 * Every TypeScript snippet in README.md runs as written, each in its own process, in an empty
 * directory, with `<url>/mod.ts` pointing at this checkout. A snippet that fails, or that has not
 * exited after 60 s (a server that never stops, a timer left running), fails the test.
 *
 * Snippets that need a database get the test cluster's in `DATABASE_URL`.
 */
import assert from "node:assert/strict";
import { freshDatabase } from "./_trustchain.ts";

const README = new URL("../README.md", import.meta.url);
const MOD = new URL("../mod.ts", import.meta.url).href;
const LIMIT_MS = 60_000;

/** The ```ts blocks of the README, with the line each starts on. */
function snippets(text: string): { line: number; code: string }[] {
  const found: { line: number; code: string }[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== "```ts") continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end].trim() !== "```") end++;
    found.push({ line: start + 1, code: lines.slice(start, end).join("\n") });
    i = end;
  }
  return found;
}

async function run(code: string, env: Record<string, string>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "stoq-readme-" });
  try {
    const file = `${dir}/snippet.ts`;
    await Deno.writeTextFile(file, code.replaceAll("<url>/mod.ts", MOD));
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--check", "-A", "--unstable-net", file],
      cwd: dir,
      env: { STOQ_HOME: `${dir}/home`, ...env },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), LIMIT_MS);
    const out = await child.output();
    clearTimeout(timer);
    const text = new TextDecoder().decode(out.stdout) +
      new TextDecoder().decode(out.stderr);
    assert.ok(
      out.success,
      out.signal === "SIGKILL"
        ? `did not exit within ${LIMIT_MS / 1000} s:\n${text}`
        : `exited with ${out.code}:\n${text}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("every README snippet runs as written", async (t) => {
  const all = snippets(await Deno.readTextFile(README));
  assert.ok(all.length >= 5, `only ${all.length} snippets found`);
  for (const { line, code } of all) {
    await t.step(`README.md:${line}`, async () => {
      if (code.includes("DATABASE_URL")) {
        await using db = await freshDatabase();
        await run(code, { DATABASE_URL: db.url });
      } else {
        await run(code, {});
      }
    });
  }
});
