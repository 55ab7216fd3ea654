// A Hugging Face cache snapshot as the model dir: every file is a relative symlink into the
// cache's blobs/. It passed validation and then failed 4 s into the run ("outside the run's allowed
// roots"); it must quantize like the plain directory, byte for byte. Only the snapshot's own link
// targets join the allowed roots (modelRoots), not the whole cache.
import { mkdirSync, readdirSync, renameSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { moeq, shardHashes, tempDir } from "./helpers.ts";

const dir = tempDir("hf-cache");
const windows = ["--calib", "random:8x32", "--eval", "random:2x32", "--algo", "rtn"];

describe("Hugging Face cache snapshot", () => {
  it("quantizes a snapshot dir of symlinks into blobs/ byte-identically to the plain dir", async () => {
    const plain = join(dir, "plain");
    const s = await moeq([
      "synth",
      "--arch",
      "qwen3_moe",
      "--preset",
      "tiny",
      "--layers",
      "2",
      "--seed",
      "5",
      "--out",
      plain,
    ]);
    expect(s.code, s.stderr).toBe(0);
    const a = await moeq(["quantize", plain, "--out", join(dir, "q-plain"), ...windows]);
    expect(a.code, a.stderr).toBe(0);

    // models--org--tiny/{blobs/<name>, snapshots/<rev>/<file> -> ../../blobs/<name>, refs/main}
    const repo = join(dir, "hub", "models--org--tiny");
    const rev = "0123456789abcdef0123456789abcdef01234567";
    mkdirSync(join(repo, "blobs"), { recursive: true });
    mkdirSync(join(repo, "snapshots", rev), { recursive: true });
    for (const f of readdirSync(plain)) {
      const blob = `blob-${f.replace(/[^a-z0-9]/gi, "")}`;
      renameSync(join(plain, f), join(repo, "blobs", blob));
      symlinkSync(join("..", "..", "blobs", blob), join(repo, "snapshots", rev, f));
    }
    const b = await moeq(["quantize", join(repo, "snapshots", rev), "--out", join(dir, "q-cache"), ...windows]);
    expect(b.code, b.stderr).toBe(0);
    expect(shardHashes(join(dir, "q-cache"))).toEqual(shardHashes(join(dir, "q-plain")));
  }, 180_000);
});
