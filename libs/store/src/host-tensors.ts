// A worker's view of tensors across hosts. On the run's home host it reads descriptors as they are
// and writes outputs into the work dir. On any other host it never opens a `file`/`shm`/`cuda`
// location: it asks the home host's file server to publish the bytes to the object store and
// fetches them from there, and hands its outputs back the same way (object store → import →
// a `file` descriptor in the work dir), so the events it appends name files the home host's
// stages can read.
import { setTimeout as sleep } from "node:timers/promises";
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
import { Data, Result } from "effect";
import { ChecksumMismatch, DescriptorRejected } from "./errors.ts";
import { reachOf } from "./host.ts";
import { type HostReply, hostSubjects, importPath, runBucket, sha256Hex } from "./host-files.ts";

/** The home host did not answer (yet): transient, the work item is retried. */
export class HostUnreachable extends Data.TaggedError("HostUnreachable")<{
  readonly subject: string;
  readonly message: string;
}> {}

/** The home host refused a request for a reason no retry fixes (names the tensor). */
export class HostRefused extends Data.TaggedError("HostRefused")<{
  readonly tag: string;
  readonly source: string;
  readonly message: string;
}> {
  readonly permanent = true;
}

export interface HostTensorsOptions {
  readonly runId: string;
  readonly hostId: string;
  /** the run's work dir, when this process has it (home host) */
  readonly workDir?: string;
  /** how long to keep asking an unanswered home host (default 60 s: a NATS fail-over takes seconds) */
  readonly patienceMs?: number;
  readonly replicas?: number;
  /** outputs up to this size travel inline in the import request (default 64 KiB) */
  readonly inlineMaxBytes?: number;
}

export class HostTensors {
  readonly counts = { fetched: 0, published: 0, bytesIn: 0, bytesOut: 0 };
  private store: Promise<ObjectStore> | undefined;

  private constructor(
    private readonly bus: Bus,
    private readonly o: HostTensorsOptions,
    /** host id of the run's home host (where `file` descriptors point) */
    readonly homeHost: string,
  ) {}

  /** Asks the run's home host who it is; retries until `patienceMs` (the supervisor may start later). */
  static async open(bus: Bus, o: HostTensorsOptions): Promise<HostTensors> {
    const r = (await request(bus, hostSubjects.info(o.runId), {}, o.patienceMs ?? 60_000)) as { hostId?: unknown };
    if (typeof r?.hostId !== "string")
      throw new HostUnreachable({
        subject: hostSubjects.info(o.runId),
        message: `the home host answered without a host id`,
      });
    return new HostTensors(bus, o, r.hostId);
  }

  /** On the home host itself (a stage the supervisor started beside the work dir): nothing to ask. */
  static home(bus: Bus, o: HostTensorsOptions & { readonly workDir: string }): HostTensors {
    return new HostTensors(bus, o, o.hostId);
  }

  get local(): boolean {
    return this.homeHost === this.o.hostId;
  }

  private objects(): Promise<ObjectStore> {
    this.store ??= new Objm(this.bus.js).create(
      runBucket(this.o.runId),
      this.o.replicas && this.o.replicas > 1 ? { replicas: this.o.replicas } : {},
    );
    this.store.catch(() => {
      this.store = undefined;
    });
    return this.store;
  }

  /**
   * A descriptor this process can open synchronously: as given when it is reachable here, else an
   * `inline` one holding the bytes fetched through the object store (checksum verified).
   */
  async readable(d: TensorDescriptor, source: string): Promise<TensorDescriptor> {
    const reach = reachOf(d.loc, this.homeHost, this.o.hostId);
    if (reach === "unreachable")
      throw new DescriptorRejected({
        reason: "unsupported",
        source,
        message: `${source}: a ${d.loc.kind} location of host ${this.homeHost} cannot be opened on host ${this.o.hostId}`,
      });
    if (reach === "direct" && d.loc.kind !== "obj") return d;
    const obj =
      d.loc.kind === "obj"
        ? d
        : await this.ask(hostSubjects.exportFrom(this.o.runId, this.homeHost), { descriptor: d, source }, source);
    if (obj.loc.kind !== "obj" && obj.loc.kind !== "inline")
      throw new HostRefused({
        tag: "DescriptorRejected",
        source,
        message: `${source}: the home host exported a ${obj.loc.kind} location`,
      });
    const want = byteLengthOf(obj.dtype, obj.shape);
    const blob = obj.loc.kind === "inline" ? obj.loc.data : await this.fetchObject(obj.loc.bucket, obj.loc.key);
    if (!blob)
      throw new HostUnreachable({
        subject: source,
        message: `${source}: object ${runBucket(this.o.runId)} vanished before it was read`,
      });
    if (blob.byteLength !== want)
      throw new DescriptorRejected({
        reason: "wrong-size",
        source,
        message: `${source}: exported tensor has ${blob.byteLength} bytes, ${obj.dtype}[${obj.shape}] needs ${want}`,
      });
    const expected = obj.checksum?.hex ?? d.checksum?.hex;
    if (expected) {
      const actual = sha256Hex(blob);
      if (actual !== expected)
        throw new ChecksumMismatch({
          source,
          expected,
          actual,
          message: `${source}: fetched bytes hash to ${actual}, expected ${expected}`,
        });
    }
    this.counts.fetched++;
    this.counts.bytesIn += blob.byteLength;
    return {
      dtype: d.dtype,
      shape: [...d.shape],
      loc: { kind: "inline", data: blob },
      ...(d.checksum ? { checksum: d.checksum } : {}),
    };
  }

  // Direct gets may be answered by a replica that has not applied the object yet (it was written
  // a moment ago on the leader): a miss is retried briefly before it counts as gone.
  private async fetchObject(bucket: string, key: string): Promise<Uint8Array | null> {
    for (let i = 0; ; i++) {
      const blob = await readObjectDirect(this.bus, bucket, key);
      if (blob || i === 4) return blob;
      await sleep(100 * 2 ** i);
    }
  }

  /**
   * Stores an output under the work dir's tensors/`rel` and returns its `file` descriptor: written
   * directly on the home host, published and imported from anywhere else. The bytes land in the
   * same place either way, so the events (and the shards built from them) do not depend on where
   * the work ran.
   */
  async output(
    rel: string,
    dtype: Dtype,
    shape: readonly number[],
    data: ArrayBufferView,
    writeLocal: (path: string, bytes: Uint8Array) => void,
  ): Promise<TensorDescriptor> {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const want = byteLengthOf(dtype, shape);
    if (bytes.byteLength !== want)
      throw new DescriptorRejected({
        reason: "wrong-size",
        source: rel,
        message: `${rel}: ${bytes.byteLength} bytes for ${dtype}[${shape}], expected ${want}`,
      });
    const hex = sha256Hex(bytes);
    if (this.local) {
      if (!this.o.workDir)
        throw new HostRefused({
          tag: "NoWorkDir",
          source: rel,
          message: `${rel}: this process is on the home host but has no work dir`,
        });
      const path = importPath(this.o.workDir, rel, rel);
      writeLocal(path, bytes);
      return {
        dtype,
        shape: [...shape],
        loc: { kind: "file", path, offset: 0, bytes: want },
        checksum: { algo: "sha256", hex },
      };
    }
    if (bytes.byteLength <= (this.o.inlineMaxBytes ?? INLINE_MAX_BYTES)) {
      this.counts.published++;
      this.counts.bytesOut += bytes.byteLength;
      const inline: TensorDescriptor = {
        dtype,
        shape: [...shape],
        loc: { kind: "inline", data: bytes.slice() },
        checksum: { algo: "sha256", hex },
      };
      return this.ask(
        hostSubjects.importTo(this.o.runId, this.homeHost),
        { descriptor: inline, path: rel, source: rel },
        rel,
      );
    }
    // Unique per output and content: two workers redoing the same item publish distinct objects,
    // and the home host writes the same bytes to the same file from either.
    const key = `out.${hex}.${process.pid}.${Math.random().toString(36).slice(2, 10)}`;
    await (await this.objects()).putBlob({ name: key }, bytes);
    this.counts.published++;
    this.counts.bytesOut += bytes.byteLength;
    const obj: TensorDescriptor = {
      dtype,
      shape: [...shape],
      loc: { kind: "obj", bucket: runBucket(this.o.runId), key, bytes: want },
      checksum: { algo: "sha256", hex },
    };
    return this.ask(
      hostSubjects.importTo(this.o.runId, this.homeHost),
      { descriptor: obj, path: rel, source: rel },
      rel,
    );
  }

  private async ask(subject: string, body: unknown, source: string): Promise<TensorDescriptor> {
    const r = (await request(this.bus, subject, body, this.o.patienceMs ?? 60_000)) as HostReply;
    if ("ok" in r) return r.ok;
    if (r.error.permanent) throw new HostRefused({ tag: r.error.tag, source, message: r.error.message });
    throw new HostUnreachable({ subject, message: r.error.message });
  }
}

const padded64url = (s: string) => {
  const b = Buffer.from(s).toString("base64url");
  return b + "=".repeat((4 - (b.length % 4)) % 4);
};

/**
 * An object's bytes through JetStream direct gets (meta by last-by-subject, then each chunk by
 * next-by-subject), which any replica answers. The object store's own reader uses a push
 * consumer with a 30 s idle heartbeat; right after a server of the cluster dies such a consumer
 * can stay silent for those 30 s, where direct gets answer at once from a surviving replica.
 * Returns null when the object does not exist (or was deleted).
 */
export async function readObjectDirect(bus: Bus, bucket: string, name: string): Promise<Uint8Array | null> {
  const stream = `OBJ_${bucket}`;
  const meta = await bus.jsm.direct.getMessage(stream, { last_by_subj: `$O.${bucket}.M.${padded64url(name)}` });
  if (!meta) return null;
  const info = meta.json<{ nuid: string; size: number; deleted?: boolean }>();
  if (info.deleted) return null;
  const out = new Uint8Array(info.size);
  const chunks = `$O.${bucket}.C.${info.nuid}`;
  let seq = 1;
  for (let off = 0; off < info.size; ) {
    const m = await bus.jsm.direct.getMessage(stream, { seq, next_by_subj: chunks });
    if (!m) return null;
    if (off + m.data.byteLength > info.size)
      throw new Error(`object ${bucket}/${name}: chunks exceed its size ${info.size}`);
    out.set(m.data, off);
    off += m.data.byteLength;
    seq = m.seq + 1;
  }
  return out;
}

/** msgpack request/reply that keeps trying through "no responders" and timeouts (a fail-over). */
async function request(bus: Bus, subject: string, body: unknown, patienceMs: number): Promise<unknown> {
  const deadline = Date.now() + patienceMs;
  let last = "";
  for (let i = 0; ; i++) {
    try {
      const m = await bus.nc.request(subject, packValue(body), {
        timeout: Math.min(30_000, Math.max(1000, deadline - Date.now())),
      });
      const v = unpackValue(m.data, `reply on ${subject}`);
      if (Result.isFailure(v))
        throw new HostRefused({ tag: "MalformedMessage", source: subject, message: v.failure.message });
      return v.success;
    } catch (e) {
      if ((e as { _tag?: string })._tag === "HostRefused") throw e;
      last = (e as Error).message ?? String(e);
    }
    if (Date.now() >= deadline)
      throw new HostUnreachable({ subject, message: `no answer on ${subject} within ${patienceMs} ms (${last})` });
    await sleep(Math.min(2000, 100 * 2 ** i) * (0.5 + Math.random()));
  }
}
