import { AckPolicy, DiscardPolicy, type JetStreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { streams, subjects } from "./subjects.ts";

export interface RunStreamOptions {
  /** Window in which a repeated Nats-Msg-Id is dropped (default 2 h: longer than a retry storm). */
  readonly duplicateWindowMs?: number;
  /** Largest message the streams accept (default 8 MiB, the embedded server's max_payload). */
  readonly maxMsgBytes?: number;
  /** JetStream replicas (default 1); a cluster without enough JetStream peers falls back to 1. */
  readonly replicas?: number;
}

const isMissing = (e: unknown) => /stream not found|10059/i.test(String((e as Error)?.message ?? e));

async function ensureStream(jsm: JetStreamManager, cfg: Parameters<JetStreamManager["streams"]["add"]>[0]) {
  try {
    await jsm.streams.info(cfg.name!);
  } catch (e) {
    if (!isMissing(e)) throw e;
    await jsm.streams.add(cfg).catch(async (err) => {
      // Another stage created it between our info and add.
      if (/already in use|10058/i.test(String(err?.message))) return;
      // Replicas the server cannot place (a single server, or too few JetStream peers): one copy.
      if ((cfg.num_replicas ?? 1) > 1 && /replicas|insufficient resources|10074|10023/i.test(String(err?.message)))
        return ensureStream(jsm, { ...cfg, num_replicas: 1 });
      throw err;
    });
  }
}

/** Creates (idempotently) a run's three streams: events (limits), work (work-queue), dead letters. */
export async function ensureRunStreams(jsm: JetStreamManager, runId: string, o: RunStreamOptions = {}) {
  const common = {
    storage: StorageType.File,
    duplicate_window: nanos(o.duplicateWindowMs ?? 2 * 3600_000),
    max_msg_size: o.maxMsgBytes ?? 8 * 1024 * 1024,
    num_replicas: o.replicas ?? 1,
  };
  await ensureStream(jsm, {
    name: streams.events(runId),
    subjects: [subjects.events(runId)],
    retention: RetentionPolicy.Limits,
    ...common,
  });
  await ensureStream(jsm, {
    name: streams.work(runId),
    subjects: [subjects.allWork(runId)],
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.Old,
    ...common,
  });
  await ensureStream(jsm, {
    name: streams.dlq(runId),
    subjects: [subjects.allDlq(runId)],
    retention: RetentionPolicy.Limits,
    ...common,
  });
}

/** Deletes a run's streams (after the run has been archived or is no longer needed). */
export async function deleteRunStreams(jsm: JetStreamManager, runId: string) {
  for (const name of [streams.events(runId), streams.work(runId), streams.dlq(runId)])
    await jsm.streams.delete(name).catch((e) => {
      if (!isMissing(e)) throw e;
    });
}

export { AckPolicy };
