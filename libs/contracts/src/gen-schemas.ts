// Writes schemas/*.json from the Effect Schemas (run after changing contracts; the contracts
// test fails when the committed files differ from what this would write).
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { renderSchemas } from "./json-schemas.ts";

export function writeSchemas(dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const files = renderSchemas();
  for (const [name, text] of Object.entries(files)) {
    const tmp = join(dir, `.${name}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, join(dir, name));
  }
  for (const f of readdirSync(dir)) if (f.endsWith(".json") && !(f in files)) rmSync(join(dir, f));
  return Object.keys(files);
}

const here = dirname(fileURLToPath(import.meta.url));
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = resolve(process.argv[2] ?? join(here, "..", "..", "..", "schemas"));
  console.log(`wrote ${writeSchemas(dir).length} schemas to ${dir}`);
}
