// Moves tensors between stage processes by descriptor. Same host: shm segments (zero-copy both
// ways: the producer fills the mapping, consumers map it copy-on-write) and read-only file
// ranges; other hosts: the NATS object store; small tensors: inline in the message.
import { createHash } from "node:crypto";
import { type Bus, LeaseTable } from "@moeq/bus";
import { byteLengthOf, type Dtype, INLINE_MAX_BYTES, locationBytes, type TensorDescriptor } from "@moeq/contracts";
import { native } from "@moeq/native";
import { type ObjectStore, Objm } from "@nats-io/obj";
import { ChecksumMismatch, DescriptorRejected, StoreFailed } from "./errors.ts";
import { mapSegment } from "./region.ts";
import { AllowedRoots } from "./roots.ts";
import { claimRun, newSegmentName, removeRunSegments, segmentPrefix, sweepStaleSegments } from "./segments.ts";

export interface Tensor {
  readonly dtype: Dtype;
  readonly shape: ReadonlyArray<number>;
  /** Exactly the tensor's bytes (row-major; sub-byte types packed). */
  readonly data: Uint8Array;
}

export interface Opened {
  readonly tensor: Tensor;
  /**
   * Drops this consumer's lease (shm/obj): the last release frees the bytes. Idempotent. An shm
   * tensor's view reads zeros afterwards: copy what must outlive the release.
   */
  release(): Promise<void>;
}

export interface PutOptions {
  /** Where the bytes go; inline is only honoured up to 64 KiB (larger tensors fall back to shm). */
  readonly prefer?: "shm" | "obj" | "inline";
  /** Consumers that will release it (default 1); 0: keep until the run ends. */
  readonly consumers?: number;
  /** Add a sha256 of the bytes to the descriptor (default false). */
  readonly checksum?: boolean;
}

export interface StoreOptions {
  readonly runId: string;
  /** Directories `file` descriptors may point into (the run dir, the run's model dirs). */
  readonly allowedRoots: ReadonlyArray<string>;
  /** The run's owner (supervisor) claims the run's segments and sweeps stale ones first. */
  readonly owner?: boolean;
}

export interface Allocation {
  readonly descriptor: TensorDescriptor;
  /** The shared mapping to fill; publish the descriptor once it is written. */
  readonly data: Uint8Array;
  /** Drops the producer's mapping once it is filled (the segment lives on for its consumers). */
  seal(): void;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export class RunTensorStore {
  private objStore: ObjectStore | undefined;
  /** Mappings this process still holds, dropped at endRun. */
  private readonly mappings = new Set<() => void>();
  private objCounter = 0;

  private constructor(
    private readonly bus: Bus,
    readonly runId: string,
    readonly roots: AllowedRoots,
    private readonly leases: LeaseTable,
  ) {}

  static async open(bus: Bus, o: StoreOptions): Promise<RunTensorStore> {
    if (o.owner) {
      sweepStaleSegments();
      claimRun(o.runId);
    }
    return new RunTensorStore(bus, o.runId, new AllowedRoots(o.allowedRoots), await LeaseTable.open(bus, o.runId));
  }

  get objBucket(): string {
    return `moeq_${this.runId}`;
  }

  private async objects(): Promise<ObjectStore> {
    this.objStore ??= await new Objm(this.bus.js).create(this.objBucket);
    return this.objStore;
  }

  /** A new shm segment sized for the tensor, leased to `consumers`; the producer writes into it. */
  async allocate(dtype: Dtype, shape: ReadonlyArray<number>, o: { consumers?: number } = {}): Promise<Allocation> {
    const bytes = byteLengthOf(dtype, shape);
    const segment = newSegmentName(this.runId);
    native.shmCreateUnmapped(segment, bytes);
    const consumers = o.consumers ?? 1;
    try {
      if (consumers > 0) await this.leases.grant(segment, bytes, consumers);
    } catch (e) {
      native.shmUnlink(segment);
      throw new StoreFailed({ operation: "allocate", message: `lease for ${segment}: ${(e as Error).message}` });
    }
    const m = mapSegment(segment, true, bytes);
    const seal = () => {
      m.unmap();
      this.mappings.delete(seal);
    };
    this.mappings.add(seal);
    return {
      descriptor: { dtype, shape: [...shape], loc: { kind: "shm", segment, offset: 0, bytes } },
      data: m.data,
      seal,
    };
  }

  /** Stores a tensor and returns its descriptor. */
  async put(t: Tensor, o: PutOptions = {}): Promise<TensorDescriptor> {
    const source = `put ${t.dtype}[${t.shape.join(",")}]`;
    const want = byteLengthOf(t.dtype, t.shape);
    if (t.data.byteLength !== want)
      throw new DescriptorRejected({
        reason: "wrong-size",
        source,
        message: `${source}: ${t.data.byteLength} bytes, expected ${want}`,
      });
    const checksum = o.checksum ? { checksum: { algo: "sha256" as const, hex: sha256(t.data) } } : {};
    const prefer = o.prefer ?? "shm";
    if (prefer === "inline" && want <= INLINE_MAX_BYTES)
      return { dtype: t.dtype, shape: [...t.shape], loc: { kind: "inline", data: t.data.slice() }, ...checksum };
    if (prefer === "obj") {
      const key = `t${process.pid}.${this.objCounter++}`;
      const os = await this.objects();
      await os.putBlob({ name: key }, t.data);
      if ((o.consumers ?? 1) > 0) await this.leases.grant(`obj.${key}`, want, o.consumers ?? 1);
      return {
        dtype: t.dtype,
        shape: [...t.shape],
        loc: { kind: "obj", bucket: this.objBucket, key, bytes: want },
        ...checksum,
      };
    }
    const a = await this.allocate(t.dtype, t.shape, o);
    a.data.set(t.data);
    a.seal();
    return { ...a.descriptor, ...checksum };
  }

  /** A `file` descriptor for a byte range of a file under the allowed roots (validated now). */
  describeFile(path: string, offset: number, dtype: Dtype, shape: ReadonlyArray<number>): TensorDescriptor {
    const bytes = byteLengthOf(dtype, shape);
    const d: TensorDescriptor = { dtype, shape: [...shape], loc: { kind: "file", path, offset, bytes } };
    this.check(d, `file ${path}`);
    return d;
  }

  private reject(reason: DescriptorRejected["reason"], source: string, message: string): never {
    throw new DescriptorRejected({ reason, source, message: `${source}: ${message}` });
  }

  /** Static checks (no I/O beyond stat/realpath): size, roots, run ownership. */
  private check(d: TensorDescriptor, source: string): void {
    const want = byteLengthOf(d.dtype, d.shape);
    const have = locationBytes(d.loc);
    if (have !== want)
      this.reject("wrong-size", source, `location holds ${have} bytes, ${d.dtype}[${d.shape.join(",")}] needs ${want}`);
    if (d.loc.kind === "file") {
      const { size } = this.roots.resolveFile(d.loc.path, source);
      if (d.loc.offset + d.loc.bytes > size)
        this.reject(
          "past-end",
          source,
          `[${d.loc.offset}, ${d.loc.offset + d.loc.bytes}) is past the end of ${d.loc.path} (${size} bytes)`,
        );
    } else if (d.loc.kind === "shm") {
      if (!d.loc.segment.startsWith(segmentPrefix(this.runId)))
        this.reject("foreign-segment", source, `segment ${d.loc.segment} does not belong to run ${this.runId}`);
    } else if (d.loc.kind === "obj") {
      if (d.loc.bucket !== this.objBucket)
        this.reject("foreign-segment", source, `bucket ${d.loc.bucket} is not this run's (${this.objBucket})`);
    } else if (d.loc.kind === "cuda") {
      this.reject("unsupported", source, "cuda descriptors hold device memory: open them with CudaTensorStore (./cuda.ts)");
    }
  }

  /**
   * Maps/fetches the tensor a descriptor points to. Rejects (DescriptorRejected) descriptors
   * outside the allowed roots, of another run, past the end of their segment/file, or whose
   * byte count does not match dtype × shape; verify=true checks the checksum when present.
   */
  async open(d: TensorDescriptor, o: { verify?: boolean; source?: string } = {}): Promise<Opened> {
    const source = o.source ?? `descriptor ${d.loc.kind}`;
    this.check(d, source);
    let data: Uint8Array;
    let release: () => Promise<void> = async () => {};
    const loc = d.loc;
    switch (loc.kind) {
      case "inline":
        data = loc.data;
        break;
      case "file":
        data = new Uint8Array(
          native.mapFileRange(this.roots.resolveFile(loc.path, source).real, loc.offset, loc.bytes),
        );
        break;
      case "shm": {
        const end = loc.offset + loc.bytes;
        let m: ReturnType<typeof mapSegment>;
        try {
          m = mapSegment(loc.segment, false, end);
        } catch (e) {
          this.reject("missing", source, `segment ${loc.segment}: ${(e as Error).message}`);
        }
        if (end > m.size) {
          m.unmap();
          this.reject(
            "past-end",
            source,
            `[${loc.offset}, ${end}) is past the end of segment ${loc.segment} (${m.size} bytes)`,
          );
        }
        data = m.data.subarray(loc.offset, end);
        const unmap = () => {
          m.unmap();
          this.mappings.delete(unmap);
        };
        this.mappings.add(unmap);
        release = async () => {
          unmap();
          await this.releaseKey(loc.segment, () => void native.shmUnlink(loc.segment));
        };
        break;
      }
      case "obj": {
        const os = await this.objects();
        const blob = await os.getBlob(loc.key);
        if (!blob) this.reject("missing", source, `object ${loc.bucket}/${loc.key} does not exist`);
        if (blob.byteLength !== loc.bytes)
          this.reject(
            "wrong-size",
            source,
            `object ${loc.key} has ${blob.byteLength} bytes, descriptor says ${loc.bytes}`,
          );
        data = blob;
        release = () => this.releaseKey(`obj.${loc.key}`, () => os.delete(loc.key).then(() => undefined));
        break;
      }
      default:
        this.reject("unsupported", source, `location kind ${(loc as { kind: string }).kind}`);
    }
    if (o.verify && d.checksum) {
      const actual = sha256(data);
      if (actual !== d.checksum.hex)
        throw new ChecksumMismatch({
          source,
          expected: d.checksum.hex,
          actual,
          message: `${source}: sha256 ${actual}, descriptor says ${d.checksum.hex}`,
        });
    }
    let released = false;
    return {
      tensor: { dtype: d.dtype, shape: d.shape, data },
      release: async () => {
        if (released) return;
        released = true;
        await release();
      },
    };
  }

  private async releaseKey(key: string, free: () => void | Promise<void>): Promise<void> {
    try {
      const left = await this.leases.release(key);
      if (left === 0) await free();
    } catch (e) {
      // endRun removes whatever a failed release leaves behind
      throw new StoreFailed({ operation: "release", message: `release ${key}: ${(e as Error).message}` });
    }
  }

  /** Ends the run's storage: unlinks every segment of the run, drops leases and objects. */
  async endRun(): Promise<string[]> {
    for (const unmap of [...this.mappings]) unmap();
    const removed = removeRunSegments(this.runId);
    await this.leases.destroy();
    try {
      await (await new Objm(this.bus.js).open(this.objBucket)).destroy();
    } catch {
      // the run never used the object store
    }
    this.objStore = undefined;
    return removed;
  }
}
