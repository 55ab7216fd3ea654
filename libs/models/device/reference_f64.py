"""Is a golden mismatch moeq's bug or the fixture's float32 rounding? Run on the GPU machine:

  python3 reference_f64.py FIXTURE_DIR MOEQ_OUT.safetensors [F64_OUT.safetensors]

FIXTURE_DIR is a tiny-random fixture (config, weights, golden.safetensors from gen_random.py);
MOEQ_OUT holds `moeq forward FIXTURE_DIR --input-ids FIXTURE_DIR/golden.safetensors --hidden-states`.
transformers runs the same bf16 weights upcast to float64 (CPU) and float32 (CUDA, TF32 off, the
way gen_random.py made the golden); every hidden state and the logits of the golden and of moeq are
compared with the float64 result (max |diff| / max |ref|). One JSON line per tensor. F64_OUT, when
given, receives the float64 logits and hidden states (for a test that holds moeq to them).
"""
import json, os, sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
fixture, ours_path = sys.argv[1], sys.argv[2]
golden = load_file(os.path.join(fixture, "golden.safetensors"))
ours = load_file(ours_path)
ids = golden["input_ids"]


def run(dtype, device):
    m = AutoModelForCausalLM.from_pretrained(fixture, dtype=dtype).to(device).eval()
    with torch.no_grad():
        out = m(ids.to(device), output_hidden_states=True)
    res = {"logits": out.logits.double().cpu()}
    for i, h in enumerate(out.hidden_states):
        res[f"hidden.{i}"] = h.double().cpu()
    return res


f64 = run(torch.float64, "cpu")
if len(sys.argv) > 3:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in f64.items()}, sys.argv[3])
f32 = run(torch.float32, "cuda" if torch.cuda.is_available() else "cpu")
rel = lambda a, b: float((a.double() - b).abs().max() / b.abs().max())
for name in sorted(f64, key=lambda n: (n != "logits", n)):
    ref = f64[name]
    row = {"tensor": name, "golden_vs_f64": rel(golden[name], ref) if name in golden else None,
           "torch_f32_vs_f64": rel(f32[name], ref), "torch_f32_vs_golden": rel(f32[name], golden[name].double()) if name in golden else None,
           "moeq_vs_f64": rel(ours[name], ref) if name in ours else None,
           "moeq_vs_golden": rel(ours[name], golden[name].double()) if name in ours and name in golden else None}
    if name == "logits":
        row["argmax_moeq_vs_f64"] = float((ours[name].argmax(-1) == ref.argmax(-1)).double().mean())
        row["argmax_golden_vs_f64"] = float((golden[name].argmax(-1) == ref.argmax(-1)).double().mean())
    print(json.dumps(row), flush=True)
