// The docs cannot rot: every shell block in README.md and docs/*.md is either run here (exit 0
// and the expected output fragments) or carries a reason why it cannot run in CI, and every
// included source file is byte-equal to the copy in the docs. Conventions: docs/index.md.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
// the alt-quantizer's JSON Schema checker (a plain .mjs module, independent of the product)
import { validator } from "./alt-quantizer/json-schema.mjs";
import {
  type Block,
  blocksOf,
  docFiles,
  extractBlocks,
  firstLine,
  isShell,
  type Mark,
  parseMark,
} from "./docs/blocks.ts";
import { EXTERNAL_MARKS, type ExternalMark } from "./docs/external-marks.ts";
import { root, shared } from "./helpers.ts";

/** Only there to stop a hung command; a healthy block takes seconds. */
const DEFAULT_TIMEOUT_S = 240;

const files = docFiles(root);
const allBlocks = files.flatMap((f) => blocksOf(root, f));

function effectiveMark(b: Block): Mark | undefined {
  if (b.mark) return b.mark;
  return EXTERNAL_MARKS.find((m) => matches(m, b))?.mark;
}

const matches = (m: ExternalMark, b: Block) => m.file === b.file && firstLine(b).startsWith(m.firstLine);

const where = (b: Block) => `${b.file}:${b.line}`;

/** The placeholders of runnable blocks (docs/index.md): the shell expands them from the environment. */
function placeholderEnv(tmp: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    MODEL: join(shared, "models", "tiny-qwen3moe-brown"),
    FIXTURES: join(shared, "fixtures"),
    TMP: tmp,
    NO_COLOR: "1",
  };
}

interface RunResult {
  readonly code: number | null;
  readonly output: string;
}

function runBlock(body: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    // Its own process group, so a timeout takes down the supervisor, its stages and its nats-server too.
    const child = spawn("bash", ["-euo", "pipefail", "-c", body], {
      cwd: root,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe("doc conventions", () => {
  it("finds the guides and their blocks", () => {
    for (const f of [
      "docs/index.md",
      "docs/getting-started.md",
      "docs/plugins.md",
      "docs/evaluating.md",
      "docs/graphs.md",
    ])
      expect(files).toContain(f);
    expect(allBlocks.filter((b) => effectiveMark(b)?.kind === "test").length).toBeGreaterThanOrEqual(10);
  });

  it("every shell block is runnable or marked non-runnable with a reason", () => {
    const unmarked = allBlocks.filter((b) => isShell(b) && effectiveMark(b) === undefined).map(where);
    expect(unmarked, 'add <!-- test: expect "…" --> or <!-- no-test: reason --> above these blocks').toEqual([]);
  });

  it("every marker is well formed", () => {
    const bad = allBlocks.flatMap((b) => {
      const m = effectiveMark(b);
      return m?.kind === "invalid" ? [`${where(b)}: ${m.problem}`] : [];
    });
    expect(bad).toEqual([]);
  });

  it("runnable blocks are shell blocks that call the launcher ./moeq, never a bare moeq", () => {
    const bad = allBlocks.flatMap((b) => {
      if (effectiveMark(b)?.kind !== "test") return [];
      if (!isShell(b)) return [`${where(b)}: a test marker on a ${b.lang} block`];
      return b.body
        .split("\n")
        .filter((l) => /(^|[;&|]\s*)moeq\s/.test(l.trim()))
        .map((l) => `${where(b)}: "${l.trim()}"`);
    });
    expect(bad).toEqual([]);
  });

  it("every external mark names an existing block", () => {
    const stale = EXTERNAL_MARKS.filter((m) => !allBlocks.some((b) => matches(m, b)));
    expect(stale.map((m) => `${m.file}: ${m.firstLine}`)).toEqual([]);
  });

  it("included source files equal the copies in the docs", () => {
    const includes = allBlocks.filter((b) => b.mark?.kind === "include");
    expect(includes.map((b) => b.file)).toContain("docs/plugins.md");
    for (const b of includes) {
      const path = (b.mark as { path: string }).path;
      expect(existsSync(join(root, path)), `${where(b)}: ${path}`).toBe(true);
      expect(`${b.body}\n`, `${where(b)} must be a copy of ${path}`).toBe(readFileSync(join(root, path), "utf8"));
    }
  });
});

/** A command line, comments dropped: what a reader would actually run. */
const commandLines = (b: Block) =>
  b.body
    .split("\n")
    .map((l) => l.replace(/(^|\s)#.*$/, "").trim())
    .filter((l) => l !== "");

describe("every block is checked", () => {
  it("no shell command elides arguments (… or ...)", () => {
    const bad = allBlocks.flatMap((b) =>
      isShell(b)
        ? commandLines(b)
            .filter((l) => /…|(^|\s)\.\.\.(\s|$)/.test(l))
            .map((l) => `${where(b)}: "${l}"`)
        : [],
    );
    expect(bad).toEqual([]);
  });

  it("benchmark and device blocks parse as bash and name scripts that exist", () => {
    const checked = allBlocks.filter((b) => ["benchmark", "device"].includes(effectiveMark(b)?.kind ?? ""));
    expect(checked.map((b) => b.file)).toEqual(expect.arrayContaining(["docs/benchmarks.md", "docs/gpu.md"]));
    const bad = checked.flatMap((b) => {
      const syntax = spawnSync("bash", ["-n"], { input: b.body, encoding: "utf8" });
      const problems = syntax.status === 0 ? [] : [`${where(b)}: bash -n: ${syntax.stderr.trim()}`];
      // repository scripts the commands run (relative paths with a script extension)
      for (const m of b.body.matchAll(
        /(?:^|[\s"'=])((?:\.\/)?(?:libs|stages|native|test|infra|schemas)\/[\w./-]+\.(?:ts|mjs|js|sh|py))\b/g,
      ))
        if (!existsSync(join(root, m[1]))) problems.push(`${where(b)}: ${m[1]} does not exist`);
      return problems;
    });
    expect(bad).toEqual([]);
  });

  it("every TypeScript block compiles (tsc on the extracted blocks, against the built packages)", () => {
    // an included block is a copy of a source file the build compiles (checked byte for byte above)
    const ts = allBlocks.filter((b) => (b.lang === "ts" || b.lang === "typescript") && b.mark?.kind !== "include");
    expect(ts.length).toBeGreaterThanOrEqual(5);
    // under node_modules so that @moeq/* and the other packages resolve as they do for a user
    const dir = join(root, "node_modules", ".cache", "moeq-doc-blocks");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const names = ts.map((b) => {
      const name = `${b.file.replace(/[^\w]/g, "_")}_${b.line}.ts`;
      // each block is a module of its own (a block without import/export still gets its own scope)
      writeFileSync(join(dir, name), `${b.body}\nexport {};\n`);
      return name;
    });
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        extends: join(root, "tsconfig.base.json"),
        compilerOptions: {
          noEmit: true,
          composite: false,
          declaration: false,
          declarationMap: false,
          sourceMap: false,
          noUnusedLocals: false,
        },
        files: names,
      }),
    );
    const tsc = spawnSync(join(root, "node_modules", ".bin", "tsc"), ["-p", join(dir, "tsconfig.json")], {
      encoding: "utf8",
    });
    // name the doc and line of each error instead of the extracted file
    const out = `${tsc.stdout}${tsc.stderr}`.replace(
      /(\w+)_md_(\d+)\.ts\((\d+),\d+\)/g,
      (_m, f: string, line: string, row: string) => `${f.replace(/_/g, "/")}.md:${Number(line) + Number(row)}`,
    );
    expect(out.trim(), "TypeScript errors in doc blocks").toBe("");
    expect(tsc.status).toBe(0);
  }, 120_000);

  it("every YAML graph block is a valid graph (schemas/graph.json)", () => {
    const graphs = allBlocks.filter((b) => b.lang === "yaml" || b.lang === "yml");
    expect(graphs.length).toBeGreaterThanOrEqual(4);
    const check = validator(JSON.parse(readFileSync(join(root, "schemas", "graph.json"), "utf8")));
    const bad = graphs.flatMap((b) => (check(parseYaml(b.body), where(b)) as string[]).map((e) => e));
    expect(bad).toEqual([]);
  });
});

describe("the marker parser", () => {
  it("reads expects, timeouts and reasons, and rejects what it cannot read", () => {
    expect(parseMark('<!-- test: expect "a \\"b\\"" expect "c" timeout 30 -->')).toEqual({
      kind: "test",
      expects: ['a "b"', "c"],
      timeoutS: 30,
    });
    expect(parseMark("<!-- no-test: needs a GPU machine -->")).toEqual({
      kind: "no-test",
      reason: "needs a GPU machine",
    });
    expect(parseMark("<!-- no-test: gpu -->")?.kind).toBe("invalid");
    expect(parseMark("<!-- test: -->")?.kind).toBe("invalid");
    expect(parseMark('<!-- test: expect "x" retry 3 -->')?.kind).toBe("invalid");
    expect(parseMark("<!-- a plain comment -->")).toBeUndefined();
  });

  it("attaches a marker across blank lines but not across text", () => {
    const md = [
      '<!-- test: expect "ok" -->',
      "",
      "```bash",
      "echo ok",
      "```",
      "<!-- no-test: some reason here -->",
      "text",
      "```sh",
      "x",
      "```",
      "~~~",
      "```",
      "~~~",
    ].join("\n");
    const b = extractBlocks("x.md", md);
    expect(b.map((x) => [x.line, x.lang, x.mark?.kind, x.body])).toEqual([
      [3, "bash", "test", "echo ok"],
      [8, "sh", undefined, "x"],
      [11, "", undefined, "```"],
    ]);
  });
});

// Blocks of one page run in order in one temp dir, so a page can build on its earlier blocks;
// pages run side by side (a run is mostly process start-up and waiting on other processes).
const pages = files
  .map((file) => ({ file, runnable: allBlocks.filter((b) => b.file === file && effectiveMark(b)?.kind === "test") }))
  .filter((p) => p.runnable.length > 0);

describe("commands in the docs", () => {
  for (const { file, runnable } of pages) {
    const marks = runnable.map((b) => effectiveMark(b) as Extract<Mark, { kind: "test" }>);
    const totalMs = marks.reduce((t, m) => t + (m.timeoutS ?? DEFAULT_TIMEOUT_S) * 1000, 0);
    it.concurrent(
      `${file}: ${runnable.length} blocks, in order`,
      async () => {
        const env = placeholderEnv(mkdtempSync(join(tmpdir(), "moeq-docs-")));
        for (const [i, b] of runnable.entries()) {
          const r = await runBlock(b.body, env, (marks[i].timeoutS ?? DEFAULT_TIMEOUT_S) * 1000);
          expect(r.code, `${where(b)} (${firstLine(b)}) exited ${r.code}:\n${r.output.slice(-4000)}`).toBe(0);
          for (const e of marks[i].expects) expect(r.output, `${where(b)}: expected output fragment`).toContain(e);
        }
      },
      totalMs + 10_000,
    );
  }
});
