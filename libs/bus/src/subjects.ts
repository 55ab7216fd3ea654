// Subject and stream names of a run. Events, work and dead letters live in three streams so
// that appends to the event log can use the stream's last sequence for optimistic concurrency
// (nats-server 2.9 cannot scope that check to a wildcard subject) and so that work can use
// WorkQueue retention (a message is removed once acked).
import { isRunId } from "@moeq/contracts";

const check = (runId: string) => {
  if (!isRunId(runId)) throw new TypeError(`invalid run id '${runId}': use 1-64 characters of [A-Za-z0-9_-]`);
  return runId;
};
const checkToken = (what: string, t: string) => {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(t))
    throw new TypeError(`invalid ${what} '${t}': use 1-64 characters of [A-Za-z0-9_-]`);
  return t;
};

export const subjects = {
  event: (runId: string, type: string) => `moeq.${check(runId)}.evt.${checkToken("event type", type)}`,
  events: (runId: string) => `moeq.${check(runId)}.evt.>`,
  work: (runId: string, queue: string) => `moeq.${check(runId)}.work.${checkToken("queue", queue)}`,
  allWork: (runId: string) => `moeq.${check(runId)}.work.>`,
  dlq: (runId: string, queue: string) => `moeq.${check(runId)}.dlq.${checkToken("queue", queue)}`,
  allDlq: (runId: string) => `moeq.${check(runId)}.dlq.>`,
};

export const streams = {
  events: (runId: string) => `MOEQ_${check(runId)}`,
  work: (runId: string) => `MOEQ_${check(runId)}_WORK`,
  dlq: (runId: string) => `MOEQ_${check(runId)}_DLQ`,
};

export const consumerName = (queue: string) => `work-${checkToken("queue", queue)}`;
