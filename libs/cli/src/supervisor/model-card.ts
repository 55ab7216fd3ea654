// The output's README.md: what a Hugging Face Hub user reads first. Written once the evaluation is
// in (so its KLD is the run's), from the run's summary and options; the Hub reads the YAML block
// (base_model, tags, quantized_by) for the model's page and its "quantized from" link.
import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { formatKldTable } from "@moeq/eval";
import { type RunInfo, writeFileAtomic } from "@moeq/runtime";
import { moeqVersion } from "../version.ts";
import type { RunSummary } from "./summary.ts";

/** Formats vLLM and SGLang load from the checkpoint's own quantization_config. */
const SERVED = new Set(["compressed-tensors", "gptq", "gptq-v2", "fp8-block", "modelopt", "gpt-oss-mxfp4"]);

/** The Hub id of the input where it came from the Hugging Face cache, else its `_name_or_path`, else its dir name. */
function baseModel(info: RunInfo): string {
  const m = /models--([^/]+)--([^/]+)\/snapshots\//.exec(info.modelDir);
  if (m) return `${m[1]}/${m[2]}`;
  try {
    const cfg = JSON.parse(readFileSync(join(info.modelDir, "config.json"), "utf8")) as { _name_or_path?: unknown };
    if (typeof cfg._name_or_path === "string" && /^[\w.-]+\/[\w.-]+$/.test(cfg._name_or_path)) return cfg._name_or_path;
  } catch {}
  return basename(info.modelDir);
}

const shellQuote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

export function modelCard(s: RunSummary, info: RunInfo): string {
  const o = info.options;
  const base = baseModel(info);
  const scheme =
    o.scheme === "w4a16" || o.scheme === "w8a16"
      ? `${o.scheme} (int${o.bits}, group ${o.groupSize === -1 ? "per channel" : o.groupSize}, ${o.symmetric ? "symmetric" : "asymmetric"})`
      : o.scheme;
  const format = s.output.format ?? o.format;
  const out: string[] = [
    "---",
    `base_model: ${base}`,
    "tags:",
    "- moeq",
    "- quantized",
    "- mixture-of-experts",
    `- ${format}`,
    `- ${o.scheme}`,
    "quantized_by: moeq",
    "---",
    "",
    `# ${basename(info.outDir)}`,
    "",
    `${base} (${s.model.arch ?? "MoE"}, ${s.model.layers} layers) quantized by moeq ${moeqVersion}: every expert calibrated on the tokens the calibration policy gave it, then quantized layer by layer.`,
    "",
    "| setting | value |",
    "| --- | --- |",
    `| scheme | ${scheme} |`,
    `| format | ${format} |`,
    `| algorithm | ${o.algorithm}${o.algorithm === "gptq" ? ` (damp ${o.damp}${o.actOrder ? ", act-order" : ""})` : ""} |`,
    `| targets | ${o.targets} |`,
    `| calibration policy | ${o.policy} (experts without calibration tokens: ${o.zeroTokenFallback}) |`,
    `| calibration text | ${o.calib} |`,
    `| evaluation text | ${o.eval} |`,
    "",
    "## Quality: KL divergence to the original model",
    "",
  ];
  if (s.kld)
    out.push(
      `On held-out text (${o.eval}), reported as llama.cpp's \`--kl-divergence\` does:`,
      "",
      "```text",
      formatKldTable(s.kld),
      "```",
    );
  else out.push("Not measured in this run.");
  if (s.coverage) {
    const c = s.coverage;
    out.push(
      "",
      "## Calibration coverage",
      "",
      `Policy ${c.policy}; an expert below ${c.minTokens} routed calibration tokens is flagged.`,
      "",
      "| layer | experts | unrouted | below threshold | without calibration tokens | min tokens used |",
      "| --- | --- | --- | --- | --- | --- |",
      ...c.layers.map(
        (l) => `| ${l.layer} | ${l.experts} | ${l.unrouted} | ${l.belowMin} | ${l.uncalibrated} | ${l.minUsed} |`,
      ),
    );
    for (const w of c.warnings) out.push("", `Warning: ${w}`);
  }
  if (s.fallbacks.length)
    out.push(
      "",
      `${s.fallbacks.length} expert(s) had no calibration tokens and were quantized with ${o.zeroTokenFallback}.`,
    );
  out.push(
    "",
    "## Use",
    "",
    "```python",
    "from transformers import AutoModelForCausalLM, AutoTokenizer",
    `model = AutoModelForCausalLM.from_pretrained("${basename(info.outDir)}", device_map="auto")`,
    `tokenizer = AutoTokenizer.from_pretrained("${basename(info.outDir)}")`,
    "```",
  );
  if (SERVED.has(format))
    out.push(
      "",
      "```bash",
      `vllm serve ${basename(info.outDir)}`,
      `python -m sglang.launch_server --model-path ${basename(info.outDir)}`,
      "```",
    );
  out.push(
    "",
    "## How it was made",
    "",
    "```bash",
    info.command ? `moeq ${info.command.map(shellQuote).join(" ")}` : "(command not recorded)",
    "```",
    "",
    `moeq ${moeqVersion}, run ${s.runId}, ${s.seconds.toFixed(0)} s.`,
    "",
  );
  return out.join("\n");
}

/** README.md in the output dir, once per completed run (a resumed run writes it if it is missing). */
export function writeModelCard(s: RunSummary, info: RunInfo): void {
  if (s.status !== "completed" || !existsSync(info.outDir)) return;
  writeFileAtomic(join(info.outDir, "README.md"), modelCard(s, info));
}
