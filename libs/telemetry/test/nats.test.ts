// Trace propagation across real OS processes through a real nats-server: the test process holds the
// run span and spawns two stage processes with TRACEPARENT in their environment; the calibrator
// sends work items to the quantizer with `traceparent` in the NATS headers. All three append to one
// trace file.
import { join } from "node:path";
import { createInterface } from "node:readline";
import { startNatsServer } from "@moeq/bus";
import { describe, expect, it } from "vitest";
import { Attr, initTelemetry, readTraceFile, runSpan, type TraceFileSpan, traceEnv } from "../src/index.ts";
import { cleanEnv, runChild, tempDir } from "./helpers.ts";

describe("trace context across processes over NATS", () => {
  // Three Node processes start here (a few seconds each on a loaded 2-core CI machine).
  it("gives one trace id, stage spans under the run span, and each consumer span under its producer span", {
    timeout: 120_000,
  }, async () => {
    using tmp = tempDir("nats");
    const file = join(tmp.dir, "run.jsonl");
    const nats = await startNatsServer();
    const runId = "run-nats";
    try {
      const t = initTelemetry({ serviceName: "supervisor", runId, stageVersion: "0.1.0", traceFile: file, env: {} });
      await runSpan(runId, async () => {
        const args = [nats.url, nats.token, `moeq.test.${runId}.work`, file, runId];
        const env = cleanEnv(traceEnv());
        const consumer = runChild("consumer.ts", args, env);
        await new Promise<void>((resolve, reject) => {
          const rl = createInterface({ input: consumer.proc.stdout! });
          rl.on("line", (l) => l.includes('"ready"') && resolve());
          consumer.done.then((r) => reject(new Error(`consumer exited early (${r.code}): ${r.stderr}`)), reject);
        });
        const producer = await runChild("producer.ts", args, env).done;
        if (producer.code !== 0) consumer.proc.kill();
        expect(
          producer.code,
          `producer: ${producer.stderr}\nconsumer: ${(await Promise.race([consumer.done, Promise.resolve(undefined)]))?.stderr ?? "running"}`,
        ).toBe(0);
        const { connect } = await import("@nats-io/transport-node");
        const nc = await connect({ servers: nats.url, token: nats.token });
        nc.publish(`moeq.test.${runId}.work.stop`, "");
        await nc.drain();
        const c = await consumer.done;
        expect(c.code, c.stderr).toBe(0);
      });
      await t.shutdown();
    } finally {
      await nats.stop();
    }

    const spans = readTraceFile(file);
    expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
    expect(new Set(spans.map((s) => s.serviceName))).toEqual(new Set(["supervisor", "calibrator", "quantizer"]));
    expect(new Set(spans.map((s) => s.resource["process.pid"])).size).toBe(3);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const parent = (s: TraceFileSpan) => (s.parentSpanId ? byId.get(s.parentSpanId) : undefined);

    const [run] = spans.filter((s) => s.name === "run");
    expect(run.parentSpanId).toBeUndefined();
    expect(run.serviceName).toBe("supervisor");
    for (const stage of ["calibrator", "quantizer"]) {
      const [s] = spans.filter((x) => x.name === stage);
      expect(s.serviceName).toBe(stage);
      expect(parent(s)).toBe(run);
      expect(s.resource).toMatchObject({ "moeq.run_id": runId, "moeq.stage": stage });
    }

    const calibrate = spans.filter((s) => s.name === "calibrate");
    const quantize = spans.filter((s) => s.name === "quantize");
    expect(calibrate).toHaveLength(6);
    expect(quantize).toHaveLength(6);
    const key = (s: TraceFileSpan) =>
      `${s.attributes[Attr.layer]}/${s.attributes[Attr.expert]}/${s.attributes[Attr.proj]}`;
    expect(new Set(quantize.map(key)).size).toBe(6);
    for (const q of quantize) {
      const p = parent(q)!;
      expect(q.serviceName).toBe("quantizer");
      expect(q.kind).toBe(5); // CONSUMER
      expect(p.name).toBe("calibrate");
      expect(p.serviceName).toBe("calibrator");
      expect(key(p)).toBe(key(q));
      expect(parent(p)?.name).toBe("expert");
      expect(parent(parent(p)!)?.name).toBe("layer");
      expect(q.attributes[Attr.algorithm]).toBe("rtn");
      expect(q.attributes[Attr.loss]).toBe(0.5 * ((q.attributes[Attr.expert] as number) + 1));
      expect(q.attributes[Attr.bytes]).toBe(1024);
      expect(q.attributes[Attr.queueWaitMs] as number).toBeGreaterThanOrEqual(0);
      expect(q.attributes[Attr.queueWaitMs] as number).toBeLessThan(10_000);
      expect(typeof q.attributes[Attr.computeMs]).toBe("number");
      // The consumer ran while the producer's span was open (request/reply).
      expect(q.startTimeUnixNano >= p.startTimeUnixNano && q.endTimeUnixNano <= p.endTimeUnixNano).toBe(true);
    }
    for (const c of calibrate)
      expect(c.attributes).toMatchObject({
        [Attr.tokensRouted]: 5 + (c.attributes[Attr.expert] as number),
        [Attr.weightMass]: 2.5,
      });
  });
});
