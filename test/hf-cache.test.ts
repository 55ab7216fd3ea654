// Model ids resolved in a Hugging Face cache built on disk (no network: HF_HUB_OFFLINE). A snapshot's
// files are relative symlinks into the cache's blobs/: it passed validation and then failed 4 s into
// the run ("outside the run's allowed roots"); it must quantize like the plain directory, byte for
// byte. Only the snapshot's own link targets join the allowed roots (modelRoots), not the whole cache.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { wantedFile } from "../libs/cli/src/model-ref.ts";
import { formatKldTable, type KldStats } from "../libs/eval/src/index.ts";
import { moeq, shardHashes, synthTiny, tempDir } from "./helpers.ts";

const dir = tempDir("hf-cache");
const windows = ["--calib", "random:8x32", "--eval", "random:2x32", "--algo", "rtn"];

describe("Hugging Face cache snapshot", () => {
  it("quantizes a model id from the cache (refs/main → snapshot of symlinks into blobs/) byte-identically to the plain dir", async () => {
    const plain = join(dir, "plain");
    await synthTiny(plain, { seed: 5 });
    // the input's other files: copied unchanged (remote code as data, never run), pickles never
    const extras: Record<string, string> = {
      "chat_template.jinja": "{% for m in messages %}{{ m.content }}{% endfor %}",
      "modeling_tiny.py": "raise SystemExit('never executed by moeq')\n",
      "notes.txt": "hello\n",
    };
    for (const [f, text] of Object.entries(extras)) writeFileSync(join(plain, f), text);
    writeFileSync(join(plain, "pytorch_model.bin"), "not a weight moeq reads");
    const a = await moeq(["quantize", plain, "--out", join(dir, "q-plain"), ...windows, "--json"]);
    expect(a.code, a.stderr).toBe(0);
    // the model card: Hub metadata, the run's own KLD table, the exact command
    const card = readFileSync(join(dir, "q-plain", "README.md"), "utf8");
    const summary = JSON.parse(a.stdout) as { kld: KldStats };
    expect(card).toMatch(/^---\nbase_model: plain\ntags:\n- moeq\n[\s\S]*quantized_by: moeq\n---\n/);
    expect(card).toContain(formatKldTable(summary.kld));
    expect(card).toContain(`moeq quantize ${plain} --out ${join(dir, "q-plain")} ${windows.join(" ")} --json`);
    expect(card).toContain("| scheme | w4a16 (int4, group 32, symmetric) |");
    for (const [f, text] of Object.entries(extras)) expect(readFileSync(join(dir, "q-plain", f), "utf8"), f).toBe(text);
    expect(existsSync(join(dir, "q-plain", "pytorch_model.bin"))).toBe(false);

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
    mkdirSync(join(repo, "refs"));
    writeFileSync(join(repo, "refs", "main"), rev);
    // the id resolves through refs/main to the snapshot (children inherit the cache location)
    process.env.HF_HUB_CACHE = join(dir, "hub");
    process.env.HF_HUB_OFFLINE = "1";
    const b = await moeq(["quantize", "org/tiny", "--out", join(dir, "q-cache"), ...windows]);
    expect(b.code, b.stderr).toBe(0);
    expect(shardHashes(join(dir, "q-cache"))).toEqual(shardHashes(join(dir, "q-plain")));
    for (const [f, text] of Object.entries(extras)) expect(readFileSync(join(dir, "q-cache", f), "utf8"), f).toBe(text);
    // the snapshot dir itself, and the id at a commit, name the same model
    const i = await moeq(["inspect", `org/tiny@${rev}`]);
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toContain(join(repo, "snapshots", rev));
  }, 180_000);

  it("an id missing from the cache, offline, is an error naming the id and the cache path; nothing is created", async () => {
    process.env.HF_HUB_CACHE = join(dir, "hub");
    process.env.HF_HUB_OFFLINE = "1";
    const out = join(dir, "q-missing");
    const r = await moeq(["quantize", "org/absent@v2", "--out", out]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      `org/absent@v2 is not complete in the Hugging Face cache ${join(dir, "hub", "models--org--absent")}`,
    );
    expect(r.stderr).toMatch(/missing refs\/v2\); HF_HUB_OFFLINE is set/);
    expect(existsSync(out)).toBe(false);
    // a snapshot whose index names a shard that is not there is incomplete too
    const repo = join(dir, "hub", "models--org--partial");
    const rev = "fedcba9876543210fedcba9876543210fedcba98";
    mkdirSync(join(repo, "snapshots", rev), { recursive: true });
    mkdirSync(join(repo, "refs"), { recursive: true });
    writeFileSync(join(repo, "refs", "main"), rev);
    writeFileSync(join(repo, "snapshots", rev, "config.json"), "{}");
    writeFileSync(
      join(repo, "snapshots", rev, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" } }),
    );
    const p = await moeq(["inspect", "org/partial"]);
    expect(p.code).not.toBe(0);
    expect(p.stderr).toMatch(/missing model-00001-of-00002\.safetensors, model-00002-of-00002\.safetensors/);
  }, 60_000);

  it("downloads would fetch weights, configs, tokenizer and text only: never pickles or code", () => {
    for (const f of [
      "model-00001-of-00002.safetensors",
      "config.json",
      "tokenizer.json",
      "tokenizer.model",
      "chat_template.jinja",
      "README.md",
      "merges.txt",
    ])
      expect(wantedFile(f), f).toBe(true);
    for (const f of [
      "pytorch_model.bin",
      "model.pt",
      "modeling_kimi.py",
      "configuration_deepseek.py",
      "tf_model.h5",
      "flax_model.msgpack",
      ".gitattributes",
      "model.ckpt",
    ])
      expect(wantedFile(f), f).toBe(false);
  });
});
