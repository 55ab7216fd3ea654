// Whole-file reads and hashes in bounded chunks: a model-sized file (an output shard, a layer's
// activations) is never read into one buffer by readFileSync, which refuses files over 2 GiB
// (ERR_FS_FILE_TOO_LARGE), and a hash never holds more than one chunk of the file.
import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

/** Bytes per read: large enough for sequential throughput, small against any process budget. */
export const FILE_CHUNK_BYTES = 16 * 1024 * 1024;

/** sha256 (hex) of a file of any size, read sequentially in FILE_CHUNK_BYTES pieces. */
export function sha256File(path: string): string {
  const hash = createHash("sha256");
  const buf = Buffer.allocUnsafe(FILE_CHUNK_BYTES);
  const fd = openSync(path, "r");
  try {
    for (let pos = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.byteLength, pos);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

/**
 * Reads `path` whole into `into` (default: a new buffer of the file's size) in chunks, so files
 * over 2 GiB work. Throws when the file's size differs from `into`'s.
 */
export function readFileInto(path: string, into?: Uint8Array): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const out = into ?? new Uint8Array(size);
    if (out.byteLength !== size) throw new Error(`${path}: ${size} bytes, expected ${out.byteLength}`);
    for (let got = 0; got < size; ) {
      const n = readSync(fd, out, got, Math.min(FILE_CHUNK_BYTES, size - got), got);
      if (n === 0) throw new Error(`${path}: ended after ${got} of ${size} bytes`);
      got += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
