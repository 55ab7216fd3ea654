import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";

const here = dirname(fileURLToPath(import.meta.url));
export const fixtures = join(here, "fixtures");
const protoRoot = join(here, "proto");

export function tempDir(label: string): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), `moeq-telemetry-${label}-`));
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

/** ExportTraceServiceRequest from the official .proto files (test/proto), loaded by protobufjs. */
export function exportTraceServiceRequestType(): protobuf.Type {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => join(protoRoot, target);
  root.loadSync("opentelemetry/proto/collector/trace/v1/trace_service.proto", { keepCase: false });
  return root.lookupType("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest");
}

/**
 * OTLP/JSON differs from the proto3 JSON mapping only in trace/span ids (hex instead of base64):
 * turn them back into bytes so protobufjs can check the rest against the official schema.
 */
export function otlpJsonToProtoObject(req: unknown): Record<string, unknown> {
  const idKeys = new Set(["traceId", "spanId", "parentSpanId"]);
  const walk = (v: unknown, key?: string): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(x));
    if (v !== null && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, k);
      return out;
    }
    if (typeof v === "string" && key !== undefined && idKeys.has(key)) return Buffer.from(v, "hex").toString("base64");
    return v;
  };
  return walk(req) as Record<string, unknown>;
}

export interface ChildResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runChild(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 90_000,
): { proc: ChildProcess; done: Promise<ChildResult> } {
  const proc = spawn(process.execPath, [join(fixtures, script), ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  proc.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
  proc.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<ChildResult>((resolve, reject) => {
    const t = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${script} did not finish within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`));
    }, timeoutMs);
    proc.once("exit", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
  return { proc, done };
}

/** The environment of the test process minus every OTEL_ / TRACE variable, so children start from "off". */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("OTEL_") && !k.startsWith("TRACE")) env[k] = v;
  return { ...env, ...extra };
}
