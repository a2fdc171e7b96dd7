/**
 * Writes the node's configuration reference into README.md (between the markers), rendered
 * from the schema: `deno task config:reference` (then `deno fmt README.md`, which the Makefile
 * runs).
 *
 * @module
 */

import { spliceReference } from "../src/node/config/reference.ts";

const readme = new URL("../README.md", import.meta.url);
await Deno.writeTextFile(
  readme,
  spliceReference(await Deno.readTextFile(readme)),
);
