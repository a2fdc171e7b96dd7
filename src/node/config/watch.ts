/**
 * Noticing that the node's configuration should be read again: SIGHUP, and changes to the file
 * (watched through its directory, since editors replace files by renaming).
 *
 * @module
 */

/** How long the file must stay quiet before a change counts (editors write in steps). */
const SETTLE_MS = 200;

/**
 * Calls `onChange` on SIGHUP and, when `path` is given, when the file changes.
 *
 * @param path The configuration file, or `undefined` (SIGHUP only).
 * @param onChange What to do; called with `"SIGHUP"` or `"file"`.
 * @returns Stops watching.
 */
export function watchConfig(
  path: string | undefined,
  onChange: (why: "SIGHUP" | "file") => void,
): Disposable {
  const onHup = () => onChange("SIGHUP");
  Deno.addSignalListener("SIGHUP", onHup);
  let watcher: Deno.FsWatcher | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (path !== undefined) {
    const slash = path.lastIndexOf("/");
    const dir = slash >= 0 ? path.slice(0, slash) || "/" : ".";
    const name = path.slice(slash + 1);
    watcher = Deno.watchFs(dir, { recursive: false });
    (async () => {
      try {
        for await (const event of watcher!) {
          if (!event.paths.some((p) => p.endsWith(`/${name}`) || p === name)) {
            continue;
          }
          clearTimeout(timer);
          timer = setTimeout(() => onChange("file"), SETTLE_MS);
        }
      } catch {
        // Closed.
      }
    })();
  }
  return {
    [Symbol.dispose]() {
      Deno.removeSignalListener("SIGHUP", onHup);
      clearTimeout(timer);
      watcher?.close();
    },
  };
}
