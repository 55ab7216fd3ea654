// Lease counts of a run's shared tensors, in the KV bucket moeq_<runId>_leases. A producer
// grants a lease with the number of consumers; each consumer's release() decrements it with a
// compare-and-set on the key's revision, and whoever takes it to zero frees the bytes. A
// consumer that crashes never releases: its segment stays until the run ends (which sweeps
// every segment of the run), so redelivered work still finds its inputs.

import { decode, encode, isRunId, Lease } from "@moeq/contracts";
import { StorageType } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { Result } from "effect";
import type { Bus } from "./connection.ts";
import { BusFailed, errorText } from "./errors.ts";

export const leaseBucket = (runId: string) => {
  if (!isRunId(runId)) throw new TypeError(`invalid run id '${runId}'`);
  return `moeq_${runId}_leases`;
};

export class LeaseTable {
  private constructor(
    private readonly kv: KV,
    readonly runId: string,
  ) {}

  static async open(bus: Bus, runId: string): Promise<LeaseTable> {
    try {
      // Memory storage: leases only matter while the run's server lives, and every release is
      // two KV operations on the consumer's path.
      return new LeaseTable(
        await new Kvm(bus.nc).create(leaseBucket(runId), { history: 1, storage: StorageType.Memory }),
        runId,
      );
    } catch (e) {
      throw new BusFailed({ operation: "leases", message: `open lease bucket ${leaseBucket(runId)}: ${errorText(e)}` });
    }
  }

  async grant(segment: string, bytes: number, holders: number): Promise<void> {
    await this.kv.create(segment, encode(Lease, { segment, bytes, holders }));
  }

  async get(segment: string): Promise<Lease | undefined> {
    const e = await this.kv.get(segment);
    if (e?.operation !== "PUT") return undefined;
    const r = decode(Lease, e.value, `${leaseBucket(this.runId)}/${segment}`);
    if (Result.isFailure(r)) throw r.failure;
    return r.success;
  }

  /** Drops one holder; returns the holders left (0: the caller frees the bytes). */
  async release(segment: string): Promise<number> {
    for (let attempt = 0; attempt < 64; attempt++) {
      const e = await this.kv.get(segment);
      if (e?.operation !== "PUT") return 0;
      const r = decode(Lease, e.value, `${leaseBucket(this.runId)}/${segment}`);
      if (Result.isFailure(r)) throw r.failure;
      const holders = Math.max(0, r.success.holders - 1);
      try {
        if (holders === 0) await this.kv.delete(segment, { previousSeq: e.revision });
        else await this.kv.update(segment, encode(Lease, { ...r.success, holders }), e.revision);
        return holders;
      } catch (err) {
        if (!/wrong last sequence|10071/i.test(errorText(err))) throw err;
        // another holder released concurrently: read again
      }
    }
    throw new BusFailed({ operation: "release", message: `release ${segment}: too much contention` });
  }

  async destroy(): Promise<void> {
    await this.kv.destroy().catch(() => undefined);
  }
}
