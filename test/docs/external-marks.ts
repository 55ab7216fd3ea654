// Marks for shell blocks in pages whose authors own them (the doc test owner may not edit those
// files). A block is named by its file and the start of its first non-blank line (a prefix, so a
// reworded comment at the end of that line does not orphan the mark). A mark here that matches no
// block fails the test, so the list cannot go stale; a page's own inline marker wins over this.
import type { Mark } from "./blocks.ts";

export interface ExternalMark {
  readonly file: string;
  /** The block's first non-blank line starts with this (trimmed). */
  readonly firstLine: string;
  readonly mark: Mark;
}

const noTest = (file: string, firstLine: string, reason: string): ExternalMark => ({
  file,
  firstLine,
  mark: { kind: "no-test", reason },
});

export const EXTERNAL_MARKS: readonly ExternalMark[] = [
  noTest(
    "README.md",
    "# 1. set up, then run the main job on the embedded default",
    "provisions the toolchain (apt, Node), runs npm ci, the whole build and the full test suite or the full-size demo; CI runs `bash infra/dev test` itself, and docs/getting-started.md runs the same quantize at a small size",
  ),
  noTest(
    "docs/pipeline.md",
    "./moeq quantize ../shared/models/tiny-qwen3moe-brown --out /tmp/q --algo gptq --group-size 32",
    "the default calibration size (128×256 Brown tokens) takes minutes on 2 cores; docs/getting-started.md runs quantize, eval and graph validate on small sizes",
  ),
  noTest(
    "docs/calibration.md",
    "./moeq quantize ../shared/models/tiny-qwen3moe-brown --out /tmp/q                  # the default: topup",
    "four runs at the default calibration size (128×256 Brown tokens, minutes each on 2 cores); test/policy-external.test.ts runs the external policy, docs/getting-started.md a small quantize",
  ),
  noTest(
    "docs/calibration.md",
    "./moeq study <model-dir>",
    "a synopsis with placeholders (`<model-dir>`, optional `[--eval …]`), not a complete command",
  ),
  noTest(
    "docs/cluster.md",
    "export MOEQ_NATS_USER=moeq",
    "needs a three-node NATS cluster on other hosts (test/cluster/cluster.test.ts simulates it with network namespaces)",
  ),
  noTest(
    "docs/cluster.md",
    "MOEQ_NATS_URL=nats://n1:4222",
    "a worker host joining a running multi-host run (simulated in test/cluster/cluster.test.ts)",
  ),
  noTest(
    "docs/tracing.md",
    "docker compose -f infra/docker-compose.yml up -d      # NATS (JetStream) on 4222, Jaeger on 16686/4318",
    "needs Docker and a Jaeger container",
  ),
  noTest(
    "docs/tracing.md",
    './moeq quantize "$MODEL" --out "$TMP/q" --trace-file run-traces.jsonl',
    "a run at the default sizes (minutes on 2 cores); test/tracing.test.ts runs quantize --trace-file on a small model and reads the file back",
  ),
  noTest(
    "docs/tracing.md",
    "while IFS= read -r line; do",
    "posts to a running Jaeger / OTLP receiver on localhost:4318",
  ),
];
