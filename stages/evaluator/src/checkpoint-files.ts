// The two model directories of an evaluation as descriptors a worker on any host can use: the
// home host lists every top-level file as a `file` descriptor (u8[size] + sha256) under a root
// its file server exports (the model dir; the packed checkpoint is linked into the work dir,
// since the output dir is not exported). A worker elsewhere fetches each file through that file
// server and the object store into a scratch copy keyed by the files' checksums; a worker on
// the home host opens the directory as it is.
import { createHash } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type { TensorDescriptor } from "@moeq/contracts";
import { writeFileAtomic } from "@moeq/runtime";
import { Data } from "effect";
import { sha256Hex } from "./window-batches.ts";
import type { CheckpointFile } from "./window-work.ts";

/** A checkpoint file list that cannot be used (bad name, mixed directories, unreadable file). */
export class CheckpointFilesError extends Data.TaggedError("CheckpointFilesError")<{
  readonly source: string;
  readonly message: string;
}> {
  readonly permanent = true;
}

function fileSha256(path: string): string {
  const h = createHash("sha256");
  const buf = new Uint8Array(1 << 22);
  const fd = openSync(path, "r");
  try {
    for (let n = readSync(fd, buf); n > 0; n = readSync(fd, buf)) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

/** Every top-level regular file of `dir` (dot files left out), sorted by name. */
export function checkpointFiles(dir: string): CheckpointFile[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.startsWith("."))
    .map((e) => e.name)
    .sort()
    .map((name) => {
      const path = join(dir, name);
      const size = statSync(path).size;
      const file: TensorDescriptor = {
        dtype: "u8",
        shape: [size],
        loc: { kind: "file", path, offset: 0, bytes: size },
        checksum: { algo: "sha256", hex: fileSha256(path) },
      };
      return { name, file };
    });
}

/**
 * Hard links (or copies, across file systems) the top-level files of `dir` into `dest`, which
 * lies under the work dir, so the home host's file server may export them.
 */
export function linkInto(dir: string, dest: string): string {
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isFile() && !e.name.startsWith(".")) {
      try {
        linkSync(join(dir, e.name), join(dest, e.name));
      } catch {
        copyFileSync(join(dir, e.name), join(dest, e.name));
      }
    }
  return dest;
}

const checkName = (f: CheckpointFile, source: string) => {
  if (f.name === "" || f.name === "." || f.name === ".." || /[/\\\0]/.test(f.name))
    throw new CheckpointFilesError({
      source,
      message: `${source}: file name ${JSON.stringify(f.name)} is not a plain file name`,
    });
  if (f.file.dtype !== "u8" || f.file.shape.length !== 1 || !f.file.checksum)
    throw new CheckpointFilesError({ source, message: `${source}: ${f.name} must be u8[size] with a sha256 checksum` });
};

/** The directory of home-host `file` descriptors (a worker on the home host reads it in place). */
export function localCheckpointDir(files: readonly CheckpointFile[], source: string): string {
  const dirs = new Set<string>();
  for (const f of files) {
    checkName(f, source);
    if (f.file.loc.kind !== "file")
      throw new CheckpointFilesError({
        source,
        message: `${source}: ${f.name} is a ${f.file.loc.kind} location, not a file`,
      });
    if (f.file.loc.path !== join(dirname(f.file.loc.path), f.name))
      throw new CheckpointFilesError({ source, message: `${source}: ${f.file.loc.path} is not named ${f.name}` });
    dirs.add(dirname(f.file.loc.path));
  }
  if (dirs.size !== 1)
    throw new CheckpointFilesError({
      source,
      message: `${source}: the files lie in ${dirs.size} directories, expected one`,
    });
  return [...dirs][0];
}

/** Fetches bytes of a descriptor (checksum verified), e.g. HostTensors.readable + its reader. */
export type FetchBytes = (d: TensorDescriptor, source: string) => Promise<Uint8Array>;

/**
 * A local copy of `files` under `cacheRoot/<hash of the file list>/`, fetched once: the marker
 * file is written last, so a worker killed mid-copy fetches again on its next item.
 */
export async function fetchCheckpoint(
  files: readonly CheckpointFile[],
  cacheRoot: string,
  fetch: FetchBytes,
  source: string,
  working: () => void,
): Promise<string> {
  for (const f of files) checkName(f, source);
  const key = sha256Hex(files.map((f) => `${f.name}\0${f.file.checksum!.hex}`).join("\n"));
  const dir = join(cacheRoot, key.slice(0, 24));
  const done = join(dir, ".complete");
  if (existsSync(done)) return dir;
  mkdirSync(dir, { recursive: true });
  for (const f of files) {
    const bytes = await fetch(f.file, `${source} ${f.name}`);
    if (sha256Hex(bytes) !== f.file.checksum!.hex)
      throw new CheckpointFilesError({
        source,
        message: `${source}: fetched ${f.name} does not hash to ${f.file.checksum!.hex}`,
      });
    writeFileAtomic(join(dir, f.name), bytes);
    working();
  }
  writeFileSync(done, "");
  return dir;
}
