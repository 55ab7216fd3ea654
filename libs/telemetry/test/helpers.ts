import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
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

export interface Received {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A one-purpose OTLP/HTTP receiver: records every request and answers 200 with an empty response. */
export async function otlpListener(
  status = 200,
): Promise<{ url: string; received: Received[]; server: Server; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({
        method: req.method ?? "",
        path: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks),
      });
      res.writeHead(status, { "content-type": "application/x-protobuf" });
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    server,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** One span of an OTLP/HTTP protobuf body, flattened (ids hex; int64 values as decimal strings). */
export interface DecodedSpan {
  readonly name: string;
  readonly traceId?: string;
  readonly spanId?: string;
  readonly parentSpanId?: string;
  readonly kind: number;
  readonly attributes: Record<string, unknown>;
  readonly startTimeUnixNano: string;
  readonly endTimeUnixNano: string;
  readonly resource: Record<string, unknown>;
  readonly scope: string;
}

type KV = { key: string; value: Record<string, unknown> };
const attrsOf = (kvs: KV[] | undefined) =>
  Object.fromEntries((kvs ?? []).map((kv) => [kv.key, Object.values(kv.value)[0]]));
const hexOf = (b64: string | undefined) => (b64 ? Buffer.from(b64, "base64").toString("hex") : undefined);

/** Decodes a POSTed ExportTraceServiceRequest with the official .proto definitions. */
export function decodeOtlpSpans(body: Uint8Array): DecodedSpan[] {
  const Req = exportTraceServiceRequestType();
  const obj = Req.toObject(Req.decode(body), { longs: String, enums: Number, bytes: String, defaults: false }) as {
    resourceSpans: {
      resource: { attributes: KV[] };
      scopeSpans: { scope: { name: string }; spans: (Record<string, unknown> & { attributes: KV[] })[] }[];
    }[];
  };
  const spans: DecodedSpan[] = [];
  for (const rs of obj.resourceSpans)
    for (const ss of rs.scopeSpans)
      for (const s of ss.spans)
        spans.push({
          name: s.name as string,
          traceId: hexOf(s.traceId as string),
          spanId: hexOf(s.spanId as string),
          parentSpanId: hexOf(s.parentSpanId as string | undefined),
          kind: s.kind as number,
          attributes: attrsOf(s.attributes),
          startTimeUnixNano: s.startTimeUnixNano as string,
          endTimeUnixNano: s.endTimeUnixNano as string,
          resource: attrsOf(rs.resource.attributes),
          scope: ss.scope.name,
        });
  return spans;
}
