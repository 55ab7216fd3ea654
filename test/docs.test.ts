// The docs cannot rot: every shell block in README.md and docs/*.md is either run here (exit 0
// and the expected output fragments) or carries a reason why it cannot run in CI, and every
// included source file is byte-equal to the copy in the docs. Conventions: docs/index.md.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
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
