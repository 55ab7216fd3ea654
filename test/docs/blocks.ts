// Fenced code blocks of the Markdown docs and the HTML-comment marker above each one
// (the convention is documented in docs/index.md).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export type Mark =
  | { readonly kind: "test"; readonly expects: readonly string[]; readonly timeoutS?: number }
  | { readonly kind: "no-test"; readonly reason: string }
  /** A benchmark command (minutes of CPU, or it gates on a machine's speed): checked, not run. */
  | { readonly kind: "benchmark"; readonly reason: string }
  /** A command for the lent GPU machine: checked, not run. */
  | { readonly kind: "device"; readonly reason: string }
  | { readonly kind: "include"; readonly path: string }
  | { readonly kind: "invalid"; readonly problem: string };

export interface Block {
  /** Path relative to the repository root, e.g. docs/index.md. */
  readonly file: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  /** The fence's info string, lower case ("" when none). */
  readonly lang: string;
  readonly body: string;
  /** The marker comment right above the fence (blank lines allowed between), if any. */
  readonly mark: Mark | undefined;
}

/** Languages whose blocks are commands a reader would paste into a shell. */
const SHELL_LANGS = new Set(["", "bash", "sh", "shell", "console", "zsh"]);
export const isShell = (b: Block) => SHELL_LANGS.has(b.lang);

/** The first non-blank line of a block: how the external marks name a block. */
export const firstLine = (b: Block) =>
  b.body
    .split("\n")
    .find((l) => l.trim() !== "")
    ?.trim() ?? "";

export function parseMark(comment: string): Mark | undefined {
  const m = /^<!--\s*(test|no-test|benchmark|device|include)\s*:?(.*?)-->$/s.exec(comment.trim());
  if (!m) return undefined;
  const rest = m[2].trim();
  const kind = m[1];
  if (kind === "no-test" || kind === "benchmark" || kind === "device")
    return rest.length >= 10
      ? { kind, reason: rest }
      : { kind: "invalid", problem: `${kind} needs a reason (at least 10 characters), got "${rest}"` };
  if (m[1] === "include")
    return rest ? { kind: "include", path: rest } : { kind: "invalid", problem: "include needs a path" };
  const expects: string[] = [];
  let timeoutS: number | undefined;
  let leftover = rest;
  for (const e of rest.matchAll(/expect\s+"((?:[^"\\]|\\.)*)"/g)) {
    expects.push(e[1].replace(/\\(.)/g, "$1"));
    leftover = leftover.replace(e[0], "");
  }
  const t = /timeout\s+(\d+)/.exec(leftover);
  if (t) {
    timeoutS = Number(t[1]);
    leftover = leftover.replace(t[0], "");
  }
  if (leftover.trim() !== "")
    return { kind: "invalid", problem: `unrecognised text in test marker: "${leftover.trim()}"` };
  if (expects.length === 0 || expects.some((e) => e.trim() === ""))
    return { kind: "invalid", problem: 'a test marker needs at least one non-empty expect "fragment"' };
  return { kind: "test", expects, timeoutS };
}

/** Every fenced block of one Markdown text (``` or ~~~ fences, closed by the same fence or longer). */
export function extractBlocks(file: string, text: string): Block[] {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  let lastComment: { text: string; endLine: number } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trimStart().startsWith("<!--")) {
      let j = i;
      let text = line;
      while (!lines[j].includes("-->") && j + 1 < lines.length) text += `\n${lines[++j]}`;
      lastComment = { text, endLine: j };
      i = j;
      continue;
    }
    const open = /^(\s*)(`{3,}|~{3,})\s*([^`\s]*)/.exec(line);
    if (!open) {
      if (line.trim() !== "") lastComment = undefined;
      continue;
    }
    const fence = open[2];
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !(lines[j].trim().startsWith(fence) && /^\s*(`{3,}|~{3,})\s*$/.test(lines[j]))) {
      body.push(lines[j]);
      j++;
    }
    blocks.push({
      file,
      line: i + 1,
      lang: open[3].toLowerCase(),
      body: body.join("\n"),
      mark: lastComment ? parseMark(lastComment.text) : undefined,
    });
    lastComment = undefined;
    i = j;
  }
  return blocks;
}

/** README.md and every docs/*.md of the checkout, as paths relative to `root`. */
export function docFiles(root: string): string[] {
  const docs = readdirSync(join(root, "docs"))
    .filter((f) => f.endsWith(".md"))
    .sort()
    .map((f) => `docs/${f}`);
  return ["README.md", ...docs];
}

export const blocksOf = (root: string, file: string) => extractBlocks(file, readFileSync(join(root, file), "utf8"));
