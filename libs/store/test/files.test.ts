// Whole-file hashing and reading in chunks, checked against coreutils' sha256sum across several
// chunks. The same on a sparse file past 2 GiB (readFileSync's limit) takes ~30 s of hashing on a
// 2-core VM, so it is in the slow command test/bench/memory-big.sh, not here.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FILE_CHUNK_BYTES, readFileInto, sha256File } from "../src/files.ts";

const dir = mkdtempSync(join(tmpdir(), "moeq-files-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha256sum = (path: string) => execFileSync("sha256sum", [path], { encoding: "utf8" }).split(" ")[0];

describe("files in chunks", () => {
  it("readFileInto reads a file across several chunks exactly, and refuses a size mismatch", () => {
    const f = join(dir, "mid.bin");
    const data = new Uint8Array(FILE_CHUNK_BYTES * 2 + 7);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
    writeFileSync(f, data);
    expect(Buffer.compare(Buffer.from(readFileInto(f)), Buffer.from(data))).toBe(0);
    const into = new Float32Array(data.length / 4 + 1);
    expect(() => readFileInto(f, new Uint8Array(into.buffer))).toThrow(/mid\.bin: \d+ bytes, expected \d+/);
    expect(sha256File(f)).toBe(sha256sum(f));
  });
});
