import assert from "node:assert/strict";

// Library modules import npm packages by full, versioned specifier so that `<url>/mod.ts` works
// without the importer's import map; deno.json's import map declares the same versions for the
// tooling. This keeps the two in step.
Deno.test("npm specifiers in the library match the versions in deno.json's import map", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  );
  const declared = new Map<string, string>();
  for (const target of Object.values(config.imports) as string[]) {
    const m = /^npm:\/?(@?[^@/]+(?:\/[^@/]+)?)@([^/]+)/.exec(target);
    if (m) declared.set(m[1], m[2]);
  }
  const used: string[] = [];
  for (const dir of ["../src/", "../ffi/"]) {
    for await (const file of walk(new URL(dir, import.meta.url))) {
      const text = await Deno.readTextFile(file);
      for (
        const m of text.matchAll(
          /["']npm:(@?[^@/"']+(?:\/[^@/"']+)?)@([^/"']+)/g,
        )
      ) {
        used.push(`${m[1]}@${m[2]}`);
        assert.equal(
          declared.get(m[1]),
          m[2],
          `${file.pathname} imports ${m[1]}@${m[2]}`,
        );
      }
    }
  }
  assert.ok(used.length > 0);
});

async function* walk(dir: URL): AsyncGenerator<URL> {
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) yield* walk(url);
    else if (entry.name.endsWith(".ts")) yield url;
  }
}
