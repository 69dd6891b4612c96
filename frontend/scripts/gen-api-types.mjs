#!/usr/bin/env node
// The API's TypeScript types, generated from its OpenAPI schema (openapi-typescript), so the
// pages cannot drift from the service.
//
//   npm run gen:api            rewrite src/api-schema.d.ts
//   npm run check:api          exit 1 when src/api-schema.d.ts is not what the schema gives
//
// The schema comes from scripts/openapi.py, run by the project's Python: $PYTHON, else
// ../.venv/bin/python, else python3 (it builds the FastAPI app, starts no service).
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const frontend = resolve(here, "..");
const root = resolve(frontend, "..");
const target = join(frontend, "src", "api-schema.d.ts");
const venvPython = join(root, ".venv", "bin", "python");
const python = process.env.PYTHON || (existsSync(venvPython) ? venvPython : "python3");

const schema = JSON.parse(
  execFileSync(python, [join(here, "openapi.py")], { cwd: root, encoding: "utf8", maxBuffer: 64 << 20 }),
);
const header =
  "/**\n * Generated from the API's OpenAPI schema by `npm run gen:api` (scripts/gen-api-types.mjs).\n" +
  " * Do not edit: change the API, then regenerate. tests/test_api_types.py checks it is current.\n */\n\n";
const text = header + astToString(await openapiTS(schema, { alphabetize: true }));

if (process.argv.includes("--check")) {
  const current = existsSync(target) ? readFileSync(target, "utf8") : "";
  if (current !== text) {
    console.error("src/api-schema.d.ts is out of date with the API: run `npm run gen:api` in frontend/ and commit it.");
    process.exit(1);
  }
  console.log("src/api-schema.d.ts is current.");
} else {
  writeFileSync(target, text);
  console.log(`wrote ${target.slice(root.length + 1)}`);
}
