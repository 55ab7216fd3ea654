// A model argument is a directory or a Hugging Face model id (`org/name`, optionally `@revision`).
// An id is looked up in the local Hugging Face cache (the layout huggingface_hub writes:
// <cache>/models--org--name/{refs/<revision>, snapshots/<commit>/<file> -> ../../blobs/<hash>}),
// and what is missing is downloaded there with the Hugging Face JS client unless HF_HUB_OFFLINE
// is set. Only weights (safetensors), JSON configs, tokenizer and plain-text files are fetched:
// pickles (.bin, .pt) and code (.py) never are, and nothing fetched is ever executed.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export interface HubId {
  readonly org: string;
  readonly name: string;
  readonly revision: string;
}

const ID = /^([A-Za-z0-9][\w.-]*)\/([A-Za-z0-9][\w.-]*)(?:@([\w./-]+))?$/;
const COMMIT = /^[0-9a-f]{40}$/;

/** A hub id, when `ref` is not an existing path and has the id's shape. */
export function parseHubId(ref: string): HubId | undefined {
  if (existsSync(ref)) return undefined;
  const m = ID.exec(ref);
  if (!m || m[2].includes("..") || m[1].includes("..")) return undefined;
  return { org: m[1], name: m[2], revision: m[3] ?? "main" };
}

export const formatId = (id: HubId) => `${id.org}/${id.name}${id.revision === "main" ? "" : `@${id.revision}`}`;

/** The cache root huggingface_hub uses: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, "hub");
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "huggingface", "hub");
}

const offline = (env: NodeJS.ProcessEnv) => /^(1|true|yes|on)$/i.test(env.HF_HUB_OFFLINE ?? "");

/** Files of a repo that moeq reads or copies: weights as safetensors, configs, tokenizer, text. Never code or pickles. */
export const wantedFile = (path: string): boolean =>
  /\.(safetensors|json|txt|md|jinja|model|tiktoken)$/i.test(path) && !/(^|\/)\./.test(path);

/** Which of a snapshot's model files are missing: config.json and every safetensors shard the index names. */
function missingFiles(snapshot: string): string[] {
  if (!existsSync(join(snapshot, "config.json"))) return ["config.json"];
  const index = join(snapshot, "model.safetensors.index.json");
  if (existsSync(index)) {
    const map = (JSON.parse(readFileSync(index, "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {};
    return [...new Set(Object.values(map))].filter((f) => !existsSync(join(snapshot, f)));
  }
  return readdirSync(snapshot).some((f) => f.endsWith(".safetensors")) ? [] : ["*.safetensors"];
}

export interface CachedSnapshot {
  readonly repoDir: string;
  /** the snapshot dir, when the revision resolves to a commit in the cache */
  readonly dir?: string;
  readonly missing: readonly string[];
}

export function cachedSnapshot(cacheDir: string, id: HubId): CachedSnapshot {
  const repoDir = join(cacheDir, `models--${id.org}--${id.name}`);
  let commit: string | undefined = COMMIT.test(id.revision) ? id.revision : undefined;
  const ref = join(repoDir, "refs", id.revision);
  if (!commit && existsSync(ref) && statSync(ref).isFile()) commit = readFileSync(ref, "utf8").trim();
  if (!commit || !COMMIT.test(commit)) return { repoDir, missing: [`refs/${id.revision}`] };
  const dir = join(repoDir, "snapshots", commit);
  if (!existsSync(dir)) return { repoDir, missing: [`snapshots/${commit}`] };
  return { repoDir, dir, missing: missingFiles(dir) };
}

/** Progress and notes of the resolution, one line each on stderr. */
export const stderrLine = (line: string): void => void process.stderr.write(`moeq: ${line}\n`);

export interface ResolveOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** progress lines (stderr) */
  readonly log?: (line: string) => void;
}

/** A model directory for `ref`: the path itself, or the id's cache snapshot (downloaded if allowed). */
export async function resolveModelRef(ref: string, o: ResolveOptions = {}): Promise<string> {
  const id = parseHubId(ref);
  if (!id) return ref;
  const env = o.env ?? process.env;
  const cacheDir = hubCacheDir(env);
  const cached = cachedSnapshot(cacheDir, id);
  if (cached.dir && cached.missing.length === 0) return cached.dir;
  const where = `${formatId(id)} is not complete in the Hugging Face cache ${cached.repoDir} (missing ${cached.missing.join(", ")})`;
  if (offline(env)) throw new Error(`${where}; HF_HUB_OFFLINE is set, so nothing is downloaded`);
  o.log?.(`${where}; downloading it`);
  return download(id, cacheDir, env, o.log ?? (() => {}));
}

async function download(
  id: HubId,
  cacheDir: string,
  env: NodeJS.ProcessEnv,
  log: (l: string) => void,
): Promise<string> {
  const hub = await import("@huggingface/hub");
  const repo = { type: "model" as const, name: `${id.org}/${id.name}` };
  const credentials = env.HF_TOKEN ? { accessToken: env.HF_TOKEN } : {};
  let commit: string;
  try {
    // one commit for every file: the client would otherwise file each under its own last commit
    commit = COMMIT.test(id.revision)
      ? id.revision
      : (await hub.modelInfo({ name: repo.name, revision: id.revision, additionalFields: ["sha"], ...credentials }))
          .sha;
  } catch (e) {
    throw new Error(
      `${formatId(id)}: cannot reach the Hugging Face Hub (${(e as Error).message}); set HF_TOKEN for a gated model, or download it first`,
    );
  }
  const files: { path: string; size: number }[] = [];
  for await (const f of hub.listFiles({ repo, revision: commit, recursive: true, ...credentials }))
    if (f.type === "file" && wantedFile(f.path)) files.push({ path: f.path, size: f.size });
  const total = files.reduce((s, f) => s + f.size, 0);
  let done = 0;
  for (const f of files) {
    log(
      `download ${formatId(id)}: ${f.path} (${(f.size / 2 ** 20).toFixed(1)} MiB; ${((100 * done) / Math.max(total, 1)).toFixed(0)} % of ${(total / 2 ** 30).toFixed(2)} GiB)`,
    );
    // a file already in the cache is not fetched again: an interrupted download resumes per file
    await hub.downloadFileToCacheDir({ repo, path: f.path, revision: commit, cacheDir, ...credentials });
    done += f.size;
  }
  const repoDir = join(cacheDir, `models--${id.org}--${id.name}`);
  if (!COMMIT.test(id.revision)) {
    mkdirSync(join(repoDir, "refs"), { recursive: true });
    writeFileSync(join(repoDir, "refs", id.revision), commit);
  }
  const snapshot = join(repoDir, "snapshots", commit);
  const missing = missingFiles(snapshot);
  if (missing.length > 0)
    throw new Error(`${formatId(id)}: downloaded, but ${missing.join(", ")} still missing in ${snapshot}`);
  return snapshot;
}
