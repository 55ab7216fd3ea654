// The file server of a run's home host (the one with the work dir and the model): it answers
// workers on other hosts over NATS request/reply. `export` publishes the bytes of a `file`
// descriptor to the run's object store and returns an `obj` descriptor; `import` takes an
// object a remote worker produced, writes it under the work dir's tensors/ (temp file + rename)
// and returns the `file` descriptor that the home host's stages read. Objects are keyed by the
// sha256 of their bytes, so a repeated request publishes or writes the same thing again.
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, isAbsolute, join, normalize, sep } from "node:path";
import type { Bus } from "@moeq/bus";
import {
  byteLengthOf,
  type Dtype,
  INLINE_MAX_BYTES,
  packValue,
  type TensorDescriptor,
  unpackValue,
} from "@moeq/contracts";
import { type ObjectStore, Objm } from "@nats-io/obj";
import type { Subscription } from "@nats-io/transport-node";
import { Result } from "effect";
import { sha256File } from "./files.ts";
import { readObjectDirect } from "./host-tensors.ts";
import { AllowedRoots } from "./roots.ts";

export const hostSubjects = {
  /** any home-host file server answers with its host id */
  info: (runId: string) => `moeq.${runId}.host.info`,
  exportFrom: (runId: string, hostId: string) => `moeq.${runId}.host.${hostId}.export`,
  importTo: (runId: string, hostId: string) => `moeq.${runId}.host.${hostId}.import`,
};

/** The run's object store bucket (the same one RunTensorStore uses for `obj` tensors). */
export const runBucket = (runId: string) => `moeq_${runId}`;

export const sha256Hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export interface ExportRequest {
  readonly descriptor: TensorDescriptor;
  readonly source: string;
}
export interface ImportRequest {
  /** an `obj` descriptor with a sha256 checksum */
  readonly descriptor: TensorDescriptor;
  /** destination relative to the work dir's tensors/ (e.g. `quant/L0.E3.down_proj.codes`) */
  readonly path: string;
  readonly source: string;
}
export type HostReply =
  | { readonly ok: TensorDescriptor }
  | { readonly error: { readonly tag: string; readonly message: string; readonly permanent: boolean } };

export interface HostFileServerOptions {
  readonly runId: string;
  readonly hostId: string;
  /** files that may be exported (the work dir and the model dir) */
  readonly roots: readonly string[];
  /** imports land in `<workDir>/tensors/` */
  readonly workDir: string;
  /** object store replicas (a cluster: 3) */
  readonly replicas?: number;
  /** tensors up to this size travel inline in the reply (default 64 KiB): one round trip, no object */
  readonly inlineMaxBytes?: number;
}

export interface HostFileServer {
  readonly hostId: string;
  readonly counts: { exports: number; imports: number; bytesOut: number; bytesIn: number; refused: number };
  stop(): Promise<void>;
}

class Refused extends Error {
  constructor(
    readonly tag: string,
    message: string,
    readonly permanent = true,
  ) {
    super(message);
  }
}

function readRange(path: string, offset: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const fd = openSync(path, "r");
  try {
    for (let got = 0; got < bytes; ) {
      const n = readSync(fd, out, got, bytes - got, offset + got);
      if (n === 0)
        throw new Refused("DescriptorRejected", `${path}: ended after ${got} of ${bytes} bytes at offset ${offset}`);
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

function writeAtomic(path: string, data: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  const fd = openSync(tmp, "w");
  try {
    for (let off = 0; off < data.byteLength; ) off += writeSync(fd, data, off, data.byteLength - off);
    fsyncSync(fd);
    closeSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  renameSync(tmp, path);
}

/** `quant/L0.E1.up_proj.codes` → its absolute path under tensors/, or Refused for anything that escapes. */
export function importPath(workDir: string, rel: string, source: string): string {
  const n = normalize(rel);
  if (rel.length === 0 || isAbsolute(rel) || n.startsWith("..") || n.split(sep).includes("..") || rel.includes("\0"))
    throw new Refused(
      "DescriptorRejected",
      `${source}: import path ${JSON.stringify(rel)} must be relative and stay under tensors/`,
    );
  return join(workDir, "tensors", n);
}

async function handleExport(
  req: ExportRequest,
  roots: AllowedRoots,
  objects: () => Promise<ObjectStore>,
  runId: string,
  counts: HostFileServer["counts"],
  inlineMax: number,
): Promise<TensorDescriptor> {
  const d = req.descriptor;
  const source = String(req.source ?? "tensor");
  if (d.loc.kind === "inline" || d.loc.kind === "obj") return d;
  if (d.loc.kind !== "file")
    throw new Refused(
      "DescriptorRejected",
      `${source}: a ${d.loc.kind} location cannot be exported by the host file server (file only)`,
    );
  const want = byteLengthOf(d.dtype, d.shape);
  if (d.loc.bytes !== want)
    throw new Refused(
      "DescriptorRejected",
      `${source}: descriptor says ${d.loc.bytes} bytes, ${d.dtype}[${d.shape}] needs ${want}`,
    );
  let real: string;
  let size: number;
  try {
    ({ real, size } = roots.resolveFile(d.loc.path, source));
  } catch (e) {
    throw new Refused("DescriptorRejected", (e as Error).message);
  }
  if (d.loc.offset + d.loc.bytes > size)
    throw new Refused(
      "DescriptorRejected",
      `${source}: [${d.loc.offset}, ${d.loc.offset + d.loc.bytes}) is past the end of ${d.loc.path} (${size} bytes)`,
    );
  const bytes = readRange(real, d.loc.offset, d.loc.bytes);
  const hex = sha256Hex(bytes);
  if (d.checksum && d.checksum.hex !== hex)
    throw new Refused(
      "ChecksumMismatch",
      `${source}: ${d.loc.path} bytes hash to ${hex}, descriptor says ${d.checksum.hex}`,
    );
  counts.exports++;
  counts.bytesOut += bytes.byteLength;
  if (bytes.byteLength <= inlineMax)
    return {
      dtype: d.dtype,
      shape: [...d.shape],
      loc: { kind: "inline", data: bytes },
      checksum: { algo: "sha256", hex },
    };
  const key = `xfer.${hex}`;
  await (await objects()).putBlob({ name: key }, bytes);
  return {
    dtype: d.dtype,
    shape: [...d.shape],
    loc: { kind: "obj", bucket: runBucket(runId), key, bytes: want },
    checksum: { algo: "sha256", hex },
  };
}

async function handleImport(
  bus: Bus,
  req: ImportRequest,
  workDir: string,
  objects: () => Promise<ObjectStore>,
  runId: string,
  counts: HostFileServer["counts"],
): Promise<TensorDescriptor> {
  const d = req.descriptor;
  const source = String(req.source ?? "tensor");
  if (d.loc.kind !== "obj" && d.loc.kind !== "inline")
    throw new Refused("DescriptorRejected", `${source}: import takes an obj or inline descriptor, got ${d.loc.kind}`);
  if (d.loc.kind === "obj" && d.loc.bucket !== runBucket(runId))
    throw new Refused(
      "DescriptorRejected",
      `${source}: bucket ${d.loc.bucket} is not this run's (${runBucket(runId)})`,
    );
  if (!d.checksum) throw new Refused("DescriptorRejected", `${source}: an imported tensor needs a sha256 checksum`);
  const want = byteLengthOf(d.dtype, d.shape);
  if (d.loc.kind === "obj" && d.loc.bytes !== want)
    throw new Refused(
      "DescriptorRejected",
      `${source}: descriptor says ${d.loc.bytes} bytes, ${d.dtype}[${d.shape}] needs ${want}`,
    );
  const path = importPath(workDir, String(req.path), source);
  const file: TensorDescriptor = {
    dtype: d.dtype as Dtype,
    shape: [...d.shape],
    loc: { kind: "file", path, offset: 0, bytes: want },
    checksum: d.checksum,
  };
  if (d.loc.kind === "inline") {
    const data = d.loc.data;
    if (data.byteLength !== want)
      throw new Refused(
        "DescriptorRejected",
        `${source}: inline tensor has ${data.byteLength} bytes, ${d.dtype}[${d.shape}] needs ${want}`,
      );
    const hex = sha256Hex(data);
    if (hex !== d.checksum.hex)
      throw new Refused(
        "ChecksumMismatch",
        `${source}: inline bytes hash to ${hex}, descriptor says ${d.checksum.hex}`,
      );
    writeAtomic(path, data);
    counts.imports++;
    counts.bytesIn += data.byteLength;
    return file;
  }
  const os = await objects();
  const blob = await readObjectDirect(bus, d.loc.bucket, d.loc.key);
  if (!blob) {
    // A repeated request whose first answer was lost: the file is already there.
    if (existsSync(path) && sha256File(path) === d.checksum.hex) return file;
    throw new Refused("Missing", `${source}: object ${d.loc.bucket}/${d.loc.key} does not exist`, false);
  }
  if (blob.byteLength !== want)
    throw new Refused(
      "DescriptorRejected",
      `${source}: object ${d.loc.key} has ${blob.byteLength} bytes, descriptor says ${want}`,
    );
  const hex = sha256Hex(blob);
  if (hex !== d.checksum.hex)
    throw new Refused(
      "ChecksumMismatch",
      `${source}: object ${d.loc.key} hashes to ${hex}, descriptor says ${d.checksum.hex}`,
    );
  writeAtomic(path, blob);
  // The file is the durable copy now; deleting the object need not delay the worker.
  void os.delete(d.loc.key).catch(() => undefined);
  counts.imports++;
  counts.bytesIn += blob.byteLength;
  return file;
}

/** Starts the home host's file server; stop() unsubscribes (objects in flight stay until the run ends). */
export async function serveHostFiles(bus: Bus, o: HostFileServerOptions): Promise<HostFileServer> {
  const roots = new AllowedRoots(o.roots);
  const counts = { exports: 0, imports: 0, bytesOut: 0, bytesIn: 0, refused: 0 };
  let store: Promise<ObjectStore> | undefined;
  const objects = () => {
    store ??= new Objm(bus.js).create(runBucket(o.runId), o.replicas && o.replicas > 1 ? { replicas: o.replicas } : {});
    store.catch(() => {
      store = undefined;
    });
    return store;
  };
  const answer =
    (handle: (req: Record<string, unknown>) => Promise<TensorDescriptor>, what: string) =>
    async (data: Uint8Array, respond: (b: Uint8Array) => boolean) => {
      let reply: HostReply;
      try {
        const req = unpackValue(data, `${what} request`);
        if (Result.isFailure(req)) throw new Refused("MalformedMessage", req.failure.message);
        const r = req.success as Record<string, unknown>;
        if (
          !r ||
          typeof r !== "object" ||
          !r.descriptor ||
          typeof r.descriptor !== "object" ||
          !(r.descriptor as { loc?: unknown }).loc
        )
          throw new Refused("InvalidMessage", `${what} request: expected {descriptor, source}`);
        reply = { ok: await handle(r) };
      } catch (e) {
        counts.refused++;
        const permanent = e instanceof Refused ? e.permanent : false;
        reply = {
          error: {
            tag: e instanceof Refused ? e.tag : "HostFileServerFailed",
            message: (e as Error).message ?? String(e),
            permanent,
          },
        };
      }
      respond(packValue(reply));
    };
  const onExport = answer(
    (r) =>
      handleExport(
        r as unknown as ExportRequest,
        roots,
        objects,
        o.runId,
        counts,
        o.inlineMaxBytes ?? INLINE_MAX_BYTES,
      ),
    "export",
  );
  const onImport = answer(
    (r) => handleImport(bus, r as unknown as ImportRequest, o.workDir, objects, o.runId, counts),
    "import",
  );
  // A queue group: a resumed supervisor may briefly overlap the old one; one answers.
  const group = `moeq-host-${o.hostId}`;
  const subs: Subscription[] = [
    bus.nc.subscribe(hostSubjects.info(o.runId), {
      queue: group,
      callback: (_e, m) => void m.respond(packValue({ hostId: o.hostId })),
    }),
    bus.nc.subscribe(hostSubjects.exportFrom(o.runId, o.hostId), {
      queue: group,
      callback: (_e, m) => void onExport(m.data, (b) => m.respond(b)),
    }),
    bus.nc.subscribe(hostSubjects.importTo(o.runId, o.hostId), {
      queue: group,
      callback: (_e, m) => void onImport(m.data, (b) => m.respond(b)),
    }),
  ];
  await bus.nc.flush();
  return {
    hostId: o.hostId,
    counts,
    stop: async () => {
      for (const s of subs) s.unsubscribe();
    },
  };
}
