// `moeq forward <model-dir> --input-ids <ids.json|ids.safetensors> --out <out.safetensors>
// [--hidden-states] [--router-logits]`: the f32 reference forward pass. Writes `logits` [B,T,V],
// and optionally `hidden.<i>` [B,T,H] (transformers' output_hidden_states convention) and
// `router_logits.<j>` [B·T,E] per MoE layer, to a temp file renamed into place.
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { loadModel, ModelInputError } from "@moeq/models";
import { openSafetensors, serializeSafetensors } from "@moeq/safetensors";
import { f32Tensor, type Tensor } from "@moeq/tensor";
import { Console, Effect } from "effect";
import { Argument, Command, Flag } from "effect/cli";

export interface TokenBatch {
  readonly ids: number[];
  readonly batch: number;
  readonly seqLen: number;
}

const bad = (file: string, why: string) => new ModelInputError({ message: `${file}: ${why}` });

function fromRows(rows: unknown, file: string): TokenBatch {
  const list = Array.isArray(rows) && rows.length > 0 && !Array.isArray(rows[0]) ? [rows] : rows;
  if (!Array.isArray(list) || list.length === 0 || !list.every(Array.isArray))
    throw bad(file, "expected a list of token ids or a list of equal-length lists");
  const seqLen = (list[0] as unknown[]).length;
  if (seqLen === 0) throw bad(file, "sequences are empty");
  const ids: number[] = [];
  list.forEach((row, b) => {
    if ((row as unknown[]).length !== seqLen)
      throw bad(
        file,
        `sequence ${b} has ${(row as unknown[]).length} tokens, sequence 0 has ${seqLen} (batches need equal lengths)`,
      );
    for (const v of row as unknown[]) {
      if (!Number.isInteger(v) || (v as number) < 0)
        throw bad(file, `sequence ${b}: ${JSON.stringify(v)} is not a token id`);
      ids.push(v as number);
    }
  });
  return { ids, batch: list.length, seqLen };
}

/** [[ids...], ...], [ids...] or {"input_ids": ...} as JSON; or a safetensors file with `input_ids` (I64/I32, [B,T] or [T]). */
export function readTokenIds(file: string): TokenBatch {
  if (file.endsWith(".safetensors")) {
    const st = openSafetensors(file);
    try {
      if (!st.has("input_ids")) throw bad(file, "has no tensor named 'input_ids'");
      const t = st.tensor("input_ids");
      if (t.dtype !== "I64" && t.dtype !== "I32")
        throw bad(file, `input_ids has dtype ${t.dtype}, expected I64 or I32`);
      if (t.shape.length !== 1 && t.shape.length !== 2)
        throw bad(file, `input_ids has shape [${t.shape}], expected [B, T] or [T]`);
      const copy = t.data.slice();
      const vals =
        t.dtype === "I64"
          ? Array.from(new BigInt64Array(copy.buffer), Number)
          : Array.from(new Int32Array(copy.buffer));
      const [batch, seqLen] = t.shape.length === 2 ? t.shape : [1, t.shape[0]];
      if (seqLen === 0 || batch === 0) throw bad(file, "input_ids is empty");
      return { ids: vals, batch, seqLen };
    } finally {
      st.close();
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw bad(file, `cannot read token ids: ${(e as Error).message}`);
  }
  if (parsed && typeof parsed === "object" && !Array.isArray(parsed) && "input_ids" in parsed)
    parsed = (parsed as { input_ids: unknown }).input_ids;
  return fromRows(parsed, file);
}

export const forward = Command.make(
  "forward",
  {
    modelDir: Argument.String("model-dir").pipe(Argument.withDescription("Hugging Face model directory")),
    inputIds: Flag.String("input-ids").pipe(
      Flag.withDescription("Token ids: JSON ([[...],...]) or safetensors with input_ids [B,T]"),
    ),
    out: Flag.String("out").pipe(Flag.withDescription("Output safetensors file (f32 logits [B,T,V], ...)")),
    hiddenStates: Flag.Boolean("hidden-states").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Also write hidden.<i> (0 = embeddings, last = final-normed)"),
    ),
    routerLogits: Flag.Boolean("router-logits").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Also write router_logits.<j> per MoE layer [B·T, E]"),
    ),
    fp8Weights: Flag.Literals("fp8-weights", ["bf16", "f32"]).pipe(
      Flag.withDefault("bf16"),
      Flag.withDescription(
        "FP8 block checkpoints: dequantize weights to bf16 (transformers' dequantize=True) or exactly to f32 (moeq eval)",
      ),
    ),
  },
  ({ modelDir, inputIds, out, hiddenStates, routerLogits, fp8Weights }) =>
    Effect.gen(function* () {
      const started = Date.now();
      const written = yield* Effect.tryPromise({
        try: async () => {
          const tokens = readTokenIds(inputIds);
          const m = loadModel(modelDir, { fp8Weights: fp8Weights === "f32" ? "F32" : "BF16" });
          try {
            const r = await m.engine().forward(tokens.ids, tokens.batch, tokens.seqLen, { hiddenStates, routerLogits });
            const { batch: B, seqLen: T } = tokens;
            const tensors: Array<[string, Tensor]> = [["logits", f32Tensor(r.logits, [B, T, m.spec.vocabSize])]];
            for (const [i, h] of (r.hiddenStates ?? []).entries())
              tensors.push([`hidden.${i}`, f32Tensor(h, [B, T, m.spec.hiddenSize])]);
            for (const [j, x] of (r.routerLogits ?? []).entries())
              tensors.push([`router_logits.${j}`, f32Tensor(x, [B * T, x.length / (B * T)])]);
            const bytes = serializeSafetensors(tensors, { producer: "moeq forward", model_type: m.spec.modelType });
            const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
            try {
              writeFileSync(tmp, bytes);
              renameSync(tmp, out);
            } catch (e) {
              try {
                unlinkSync(tmp);
              } catch {}
              throw new Error(`${out}: cannot write: ${(e as Error).message}`);
            }
            return { tokens: B * T, tensors: tensors.length, modelType: m.spec.modelType };
          } finally {
            m.close();
          }
        },
        catch: (e) => e as Error,
      });
      const s = (Date.now() - started) / 1000;
      yield* Console.log(
        `${written.modelType}: ${written.tokens} tokens in ${s.toFixed(2)} s, wrote ${written.tensors} tensors to ${out}`,
      );
    }).pipe(
      // A user error (bad directory, unsupported architecture, bad ids) is one line on stderr and
      // exit status 1, not a stack trace.
      Effect.catch((e) =>
        Effect.sync(() => {
          process.stderr.write(`moeq forward: ${e instanceof Error ? e.message : String(e)}\n`);
          process.exitCode = 1;
        }),
      ),
    ),
).pipe(
  Command.withDescription("Run the f32 reference forward pass and write logits (and hidden states / router logits)"),
);
