// GPU-resident tensors between stage processes of one host: `cuda` descriptors (CUDA IPC).
// The producer exports a device allocation (handle + offset) and records an interprocess event
// after its writes; a consumer maps the allocation, orders its own GPU stream after that event
// (no host round trip) and works on the device memory in place. The bytes belong to the
// producing process: it keeps the allocation until the lease (LeaseTable, key derived from the
// handle) reaches zero — the consumer that takes it there tells the producer on the bus — or
// until it closes its CudaTensorStore. Consumers must release before the producer exits.
import { createHash } from "node:crypto";
import { type Bus, LeaseTable } from "@moeq/bus";
import { byteLengthOf, type Dtype, type TensorDescriptor } from "@moeq/contracts";
import {
  type CudaBuffer,
  type CudaIpcEvent,
  type CudaKernels,
  CudaUnavailable,
  cudaKernels,
  native,
} from "@moeq/native";
import { DescriptorRejected, StoreFailed } from "./errors.ts";

export interface CudaTensor {
  readonly dtype: Dtype;
  readonly shape: ReadonlyArray<number>;
  /** Device memory; reads are ordered after the producer's event on this process's stream. */
  readonly buffer: CudaBuffer;
}

export interface CudaOpened {
  readonly tensor: CudaTensor;
  /** Unmaps and drops this consumer's lease (the last release lets the producer free). Idempotent. */
  release(): Promise<void>;
}

export interface CudaPutOptions {
  /** Consumers that will release it (default 1); 0: kept until the producer closes. */
  readonly consumers?: number;
}

/** Lease key of a cuda location: the same in every process (derived from handle and offset). */
export function cudaLeaseKey(handle: Uint8Array, offset: number): string {
  return `cuda.${createHash("sha256").update(handle).digest("hex").slice(0, 32)}.${offset}`;
}

const freeSubject = (runId: string) => `moeq.${runId}.store.cuda-free`;

export class CudaTensorStore {
  /** Exported by this process: key → buffer held until its lease reaches zero. */
  private readonly exported = new Map<string, { buffer: CudaBuffer; event: CudaIpcEvent }>();
  private readonly sub: { unsubscribe(): void } | undefined;

  private readonly bus: Bus;
  readonly runId: string;
  private readonly leases: LeaseTable;
  private readonly cu: CudaKernels | undefined;

  private constructor(bus: Bus, runId: string, leases: LeaseTable, cu: CudaKernels | undefined) {
    this.bus = bus;
    this.runId = runId;
    this.leases = leases;
    this.cu = cu;
    if (cu)
      this.sub = bus.nc.subscribe(freeSubject(runId), {
        callback: (_err, msg) => this.dropExport(new TextDecoder().decode(msg.data)),
      });
  }

  /** Works on every build; put/open of device memory need the CUDA build (typed errors otherwise). */
  static async open(bus: Bus, runId: string): Promise<CudaTensorStore> {
    let cu: CudaKernels | undefined;
    try {
      cu = native.withCuda && (native.cudaDeviceCount?.() ?? 0) > 0 ? cudaKernels(0) : undefined;
    } catch {
      cu = undefined;
    }
    return new CudaTensorStore(bus, runId, await LeaseTable.open(bus, runId), cu);
  }

  get available(): boolean {
    return this.cu !== undefined;
  }

  private kernels(what: string): CudaKernels {
    if (!this.cu)
      throw new CudaUnavailable(
        `${what}: cuda descriptors need the CUDA build of @moeq/native and a visible GPU (this process has ${
          native.withCuda ? "no GPU" : "a CPU-only build"
        })`,
      );
    return this.cu;
  }

  /** Bytes exported by this process and not yet released by all their consumers. */
  get exportedCount(): number {
    return this.exported.size;
  }

  /**
   * Describes a device buffer the caller has filled (its GPU work queued on moeq's stream): records
   * the ordering event, exports the handle and leases it to `consumers`. The store keeps the
   * buffer alive (the caller may cudaFree its own handle) until the last consumer releases.
   */
  async put(
    dtype: Dtype,
    shape: ReadonlyArray<number>,
    buffer: CudaBuffer,
    o: CudaPutOptions = {},
  ): Promise<TensorDescriptor> {
    const cu = this.kernels(`put ${dtype}[${shape.join(",")}]`);
    const source = `put ${dtype}[${shape.join(",")}]`;
    const bytes = byteLengthOf(dtype, shape);
    if (buffer.bytes !== bytes)
      throw new DescriptorRejected({
        reason: "wrong-size",
        source,
        message: `${source}: the device buffer holds ${buffer.bytes} bytes, expected ${bytes}`,
      });
    const ex = cu.cudaIpcExport(buffer);
    const event = cu.cudaIpcEventCreate(buffer.device);
    cu.cudaEventRecord(event);
    const key = cudaLeaseKey(ex.handle, ex.offset);
    const held = cu.cudaView(buffer, 0, buffer.bytes);
    this.exported.set(key, { buffer: held, event });
    const consumers = o.consumers ?? 1;
    try {
      if (consumers > 0) await this.leases.grant(key, bytes, consumers);
    } catch (e) {
      this.dropExport(key);
      throw new StoreFailed({ operation: "cuda put", message: `lease for ${key}: ${(e as Error).message}` });
    }
    return {
      dtype,
      shape: [...shape],
      loc: { kind: "cuda", device: buffer.device, handle: ex.handle, offset: ex.offset, bytes, event: event.handle },
    };
  }

  private dropExport(key: string): void {
    const e = this.exported.get(key);
    if (!e || !this.cu) return;
    this.exported.delete(key);
    this.cu.cudaFree(e.buffer);
  }

  /**
   * Maps the device memory a cuda descriptor points to. Rejects (DescriptorRejected) a wrong byte
   * count, a range past the allocation's end, or an allocation that no longer exists.
   */
  async open(d: TensorDescriptor, o: { source?: string } = {}): Promise<CudaOpened> {
    const source = o.source ?? "descriptor cuda";
    const loc = d.loc;
    if (loc.kind !== "cuda")
      throw new DescriptorRejected({
        reason: "unsupported",
        source,
        message: `${source}: a ${loc.kind} descriptor, not cuda`,
      });
    const want = byteLengthOf(d.dtype, d.shape);
    if (loc.bytes !== want)
      throw new DescriptorRejected({
        reason: "wrong-size",
        source,
        message: `${source}: location holds ${loc.bytes} bytes, ${d.dtype}[${d.shape.join(",")}] needs ${want}`,
      });
    if (loc.handle.byteLength !== 64)
      throw new DescriptorRejected({
        reason: "missing",
        source,
        message: `${source}: IPC handle has ${loc.handle.byteLength} bytes, not 64`,
      });
    if (!this.cu)
      throw new DescriptorRejected({
        reason: "unsupported",
        source,
        message: `${source}: cuda descriptors need the CUDA build of @moeq/native and a visible GPU`,
      });
    const cu = this.cu;
    let buffer: CudaBuffer;
    try {
      buffer = cu.cudaIpcOpen(loc.handle, loc.device, loc.offset, loc.bytes);
    } catch (e) {
      const m = (e as Error).message;
      throw new DescriptorRejected({
        reason: /past the end/.test(m) ? "past-end" : "missing",
        source,
        message: `${source}: ${m}`,
      });
    }
    if (loc.event) {
      try {
        cu.cudaEventWait(cu.cudaIpcEventOpen(loc.event, loc.device));
      } catch (e) {
        cu.cudaFree(buffer);
        throw new DescriptorRejected({
          reason: "missing",
          source,
          message: `${source}: event: ${(e as Error).message}`,
        });
      }
    }
    const key = cudaLeaseKey(loc.handle, loc.offset);
    let released = false;
    return {
      tensor: { dtype: d.dtype, shape: d.shape, buffer },
      release: async () => {
        if (released) return;
        released = true;
        cu.cudaSynchronize(loc.device); // our reads are done before the producer may free
        cu.cudaFree(buffer);
        const left = await this.leases.release(key);
        if (left === 0) this.bus.nc.publish(freeSubject(this.runId), new TextEncoder().encode(key));
      },
    };
  }

  /**
   * Drops a consumer's lease without mapping the memory (a redelivered item whose work is already
   * done): the last release lets the producer free, as release() does.
   */
  async releaseUnopened(d: TensorDescriptor): Promise<void> {
    if (d.loc.kind !== "cuda") return;
    const key = cudaLeaseKey(d.loc.handle, d.loc.offset);
    const left = await this.leases.release(key);
    if (left === 0) this.bus.nc.publish(freeSubject(this.runId), new TextEncoder().encode(key));
  }

  /** Frees everything this process still exports (consumers must have released). */
  async close(): Promise<void> {
    this.sub?.unsubscribe();
    for (const key of [...this.exported.keys()]) this.dropExport(key);
  }
}
