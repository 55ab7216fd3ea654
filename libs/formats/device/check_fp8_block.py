"""transformers 5.17 loads moeq's FP8-block checkpoint; do its logits agree with moeq's? GPU machine:

  python3 check_fp8_block.py CKPT_DIR MOEQ_LOGITS.safetensors GOLDEN.safetensors

CKPT_DIR: `moeq quantize <fixture> --scheme fp8-block --format fp8-block --targets all-linear`.
MOEQ_LOGITS: `moeq forward CKPT_DIR --fp8-weights f32 --hidden-states --input-ids GOLDEN` (what
moeq's evaluator scores: the FP8 weights times their 128×128 weight_scale_inv, exactly, in float32).
Three loads: (1) FineGrainedFP8Config(dequantize=True) in float32 on CPU — the same math as moeq,
so the logits must agree to float32 rounding; (2) the same on CUDA with TF32 off; (3) the real FP8
path (no dequantize, bf16, FP8 weights + dynamic per-token-group FP8 activations on the GPU) —
activation quantization moeq's float32 evaluation does not model, so only closeness and top-1
agreement are reported. One JSON line per load.
"""
import json, sys
import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
ckpt, ours_path, golden_path = sys.argv[1:4]
ours_all = {k: v.double() for k, v in load_file(ours_path).items()}
ours = ours_all["logits"]
golden = load_file(golden_path)
ids = golden["input_ids"]
cfg = json.load(open(f"{ckpt}/config.json"))["quantization_config"]


def check(label, dtype, device, dequantize):
    row = {"checkpoint": ckpt.rstrip("/").split("/")[-1], "load": label}
    try:
        q = transformers.FineGrainedFP8Config(weight_block_size=tuple(cfg["weight_block_size"]), dequantize=dequantize)
        m = AutoModelForCausalLM.from_pretrained(ckpt, dtype=dtype, device_map=device, quantization_config=q).eval()
        row["linear_types"] = sorted({type(mod).__name__ for n, mod in m.named_modules() if n.endswith(("q_proj", "o_proj", "experts", "down_proj", "q_b_proj"))})
        with torch.no_grad():
            out = m(ids.to(device), output_hidden_states=True)
        lg = out.logits.double().cpu()
        row["max_rel_diff_vs_moeq"] = float((lg - ours).abs().max() / ours.abs().max())
        row["hidden_max_rel_diff_vs_moeq"] = [
            float((h.double().cpu() - ours_all[f"hidden.{i}"]).abs().max() / ours_all[f"hidden.{i}"].abs().max())
            for i, h in enumerate(out.hidden_states) if f"hidden.{i}" in ours_all]
        row["top1_agree_vs_moeq"] = float((lg.argmax(-1) == ours.argmax(-1)).double().mean())
        row["top1_agree_vs_unquantized_golden"] = float((lg.argmax(-1) == golden["logits"].argmax(-1)).double().mean())
    except Exception as e:  # report and go on: one load failing must not hide the others
        row["error"] = repr(e)[:500]
    print(json.dumps(row), flush=True)


check("dequantize-f32-cpu", torch.float32, "cpu", True)
if torch.cuda.is_available():
    check("dequantize-f32-cuda", torch.float32, "cuda", True)
    check("fp8-kernels-bf16-cuda", torch.bfloat16, "cuda", False)
