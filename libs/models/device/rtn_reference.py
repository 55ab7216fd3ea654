"""Independent quality reference for every tiny-random fixture: RTN W4 g16 symmetric of the routed
experts, scored with transformers. Uses no moeq code. Runs on CUDA when there is a GPU, else on
the CPU (transformers 5.17; the committed numbers: CPU, torch 2.13, see the JSON):

  python3 rtn_reference.py FIXTURES_DIR OUT.json [N T]

libs/models/device/rtn-reference.json was made on the dev machine's CPU (the GPU machine was not
lent that day) in a venv with `pip install torch==2.13.0+cpu transformers==5.17.0 safetensors`:
  python3 libs/models/device/rtn_reference.py ../shared/fixtures/tiny-random \
    libs/models/device/rtn-reference.json 4 32      (about 2 minutes)

Each original model's logits on its fixture's golden input are compared with golden.safetensors
(made by transformers on CUDA) and the max relative difference is written as goldenLogitsMaxRel:
the evidence that this run computes the same models as the goldens (DeepSeek-V3.2's indexer needs
its exact ties broken the way the CUDA run did, see lower_index_ties).

For each fixture folder (config.json + model.safetensors) the routed experts' weights are
quantized the way docs/formats.md says a compressed-tensors W4A16 checkpoint stores them:
  per output row and group of 16 consecutive input columns, s = max|w| / 7.5 (= 2·max|w|/15;
  an all-zero group uses max|w| = 1) computed in float64, rounded to float32 and then to the
  checkpoint's scale dtype (bf16 here, the weights' dtype; round to nearest even);
  code = clamp(round_half_even(w / s), −8, 7); dequantized weight = float32(code · s).
The quantized model (every other tensor unchanged) and the original are run by transformers in
float32 (TF32 off) on the same token windows; per scored position (every position with a next
token: T − 1 per window), KLD = Σ p (ln p − ln q) over the whole vocabulary, in float64, p from
the original and q from the quantized model. The JSON has the mean KLD per architecture and the
windows themselves.

Windows: N windows of T uniform token ids from mulberry32 (a public 32-bit PRNG) seeded with
(1000003 XOR 0x5EED), id = floor(u · vocab); written into the JSON so that any tool can use them.

Routed experts are found by their on-disk (Hugging Face hub) names and layouts:
  <...>.experts.<e>.{gate_proj,up_proj,down_proj,w1,w2,w3}.weight   nn.Linear [out, in]
  gpt_oss, llama4_text: <...>.experts.gate_up_proj [E, in, out], <...>.experts.down_proj [E, in, out]
    (the modeling code multiplies x @ W[e])
  granitemoe: block_sparse_moe.input_linear.weight [E, out, in], output_linear.weight [E, out, in]
    (F.linear)
  dbrx: ffn.experts.mlp.{w1,v1} [E·I, H] = [E, out, in]; ffn.experts.mlp.w2 [E·I, H] = [E, in, out]
    (DbrxExpertGLU: x @ w1[e].T, x @ v1[e].T, h @ w2[e])
Shared experts, routers, attention and dense MLPs stay as they are.
"""
import json
import os
import re
import shutil
import sys
import tempfile

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

BITS, GROUP = 4, 16
SEED = 1000003 ^ 0x5EED
M32 = 0xFFFFFFFF


def mulberry32(seed):
    a = seed & M32

    def imul(x, y):
        return (x * y) & M32

    def rand():
        nonlocal a
        a = (a + 0x6D2B79F5) & M32
        t = a
        t = imul(t ^ (t >> 15), t | 1)
        t = (t ^ ((t + imul(t ^ (t >> 7), t | 61)) & M32)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    return rand


def windows(n, t, vocab):
    rand = mulberry32(SEED)
    return [[int(rand() * vocab) for _ in range(t)] for _ in range(n)]


def rtn(w):
    """w [rows, cols] (float32 values) → dequantized float32, groups of GROUP along cols."""
    rows, cols = w.shape
    assert cols % GROUP == 0, (rows, cols)
    g = w.double().reshape(rows, cols // GROUP, GROUP)
    amax = g.abs().amax(dim=-1, keepdim=True)
    amax = torch.where(amax == 0, torch.ones_like(amax), amax)
    scale = (2 * amax / (2**BITS - 1)).float().bfloat16().double()
    scale = torch.where(scale == 0, torch.full_like(scale, 2.0**-133), scale)
    code = torch.clamp(torch.round(g / scale), -(2 ** (BITS - 1)), 2 ** (BITS - 1) - 1)
    return (code * scale).float().reshape(rows, cols)


EXPERT_PARAM = re.compile(r"\.experts\.|\.(input_linear|output_linear)\.")
PER_EXPERT = re.compile(r"\.experts\.\d+\.(gate_proj|up_proj|down_proj|w1|w2|w3)\.weight$")


def expert_layout(name, model_type):
    """'linear' ([out, in]), 'in_out' ([E, in, out]), 'out_in' ([E, out, in]) or None."""
    if PER_EXPERT.search(name):
        return "linear"
    if model_type in ("gpt_oss", "llama4_text") and re.search(r"\.experts\.(gate_up_proj|down_proj)$", name):
        return "in_out"
    if model_type == "granitemoe" and re.search(r"\.block_sparse_moe\.(input_linear|output_linear)\.weight$", name):
        return "out_in"
    if model_type == "dbrx" and re.search(r"\.ffn\.experts\.mlp\.(w1|v1)$", name):
        return "out_in"
    if model_type == "dbrx" and re.search(r"\.ffn\.experts\.mlp\.w2$", name):
        return "in_out"
    return None


def quantize_checkpoint(src, dst, model_type, n_experts):
    tensors = load_file(os.path.join(src, "model.safetensors"))
    out, quantized = {}, []
    for name, t in tensors.items():
        layout = expert_layout(name, model_type)
        if layout is None:
            out[name] = t
            continue
        w = t.float()
        if layout == "linear":
            q = rtn(w)
        else:
            if w.dim() == 2:  # dbrx: [E·I, H] row-stacked experts
                w = w.reshape(n_experts, -1, w.shape[-1])
            e = w.transpose(1, 2) if layout == "in_out" else w
            q = torch.stack([rtn(e[i].contiguous()) for i in range(e.shape[0])])
            q = (q.transpose(1, 2) if layout == "in_out" else q).reshape(t.shape)
        out[name] = q.contiguous()
        quantized.append(name)
    for f in os.listdir(src):
        if f.endswith(".json") and f != "report.json":
            shutil.copy(os.path.join(src, f), dst)
    save_file(out, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    return quantized


def stable_topk(self, k, dim=-1, largest=True, sorted=True):
    """torch.topk with exact ties resolved to the lower index (a stable sort)."""
    order = torch.sort(self, dim=dim, descending=largest, stable=True).indices.narrow(dim, 0, k)
    return torch.return_types.topk((self.gather(dim, order), order))


def lower_index_ties(module_cls):
    """torch.topk leaves the order of exact ties unspecified, and CPU and CUDA differ. DeepSeek-V3.2's
    DSA indexer ranks keys by Σ_h w_h·ReLU(q_h·k), which has exact ties (ReLU zeros) on these tiny
    models: its selection is made with ties going to the lower position, as in the CUDA run that
    made the fixtures' golden.safetensors (each model's logits on the golden input are checked
    against it below)."""
    forward = module_cls.forward

    def patched(self, *a, **kw):
        original, torch.Tensor.topk = torch.Tensor.topk, stable_topk
        try:
            return forward(self, *a, **kw)
        finally:
            torch.Tensor.topk = original

    module_cls.forward = patched


try:
    from transformers.models.deepseek_v32 import modeling_deepseek_v32

    lower_index_ties(modeling_deepseek_v32.DeepseekV32Indexer)
except ImportError:
    pass


def experts_of(cfg):
    c = cfg.get("text_config", cfg)
    for k in ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"):
        if k in c:
            return c[k]
    return c["ffn_config"]["moe_num_experts"]


def logits(model_dir, ids, dev, golden=None):
    """Logits on ids, the parameters as loaded, and (golden given) max |Δ| / max |golden| of the
    logits on the fixture's golden input."""
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(dev).eval()
    with torch.no_grad():
        out = m(ids.to(dev)).logits.double().cpu()
        gold = None
        if golden is not None:
            g = m(golden["input_ids"].to(dev)).logits.double().cpu()
            gold = float((g - golden["logits"].double()).abs().max() / golden["logits"].double().abs().max())
    params = {n: p.detach().cpu() for n, p in m.state_dict().items()}
    return out, params, gold


def main():
    fixtures, out_path = sys.argv[1], sys.argv[2]
    n, t = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (4, 32)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    result = {
        "what": "mean KLD(original || RTN W4 g16 symmetric routed experts) per tiny-random fixture, computed by transformers",
        "script": "libs/models/device/rtn_reference.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "scheme": {"bits": BITS, "groupSize": GROUP, "symmetric": True, "scaleDtype": "bf16", "targets": "routed experts"},
        "windows": None,
        "models": {},
    }
    archs = sorted(d for d in os.listdir(fixtures) if os.path.exists(os.path.join(fixtures, d, "config.json")))
    vocab = None
    for arch in archs:
        src = os.path.join(fixtures, arch)
        cfg = json.load(open(os.path.join(src, "config.json")))
        v = cfg.get("text_config", cfg)["vocab_size"]
        if vocab is None:
            vocab = v
            ids_list = windows(n, t, vocab)
            result["windows"] = {"n": n, "seqLen": t, "vocab": vocab, "prng": "mulberry32", "seed": SEED, "ids": ids_list}
        assert v == vocab, f"{arch}: vocab {v} != {vocab}; windows are shared"
        ids = torch.tensor(ids_list, dtype=torch.long)
        try:
            with tempfile.TemporaryDirectory() as dst:
                quantized = quantize_checkpoint(src, dst, cfg["model_type"], experts_of(cfg))
                ref, p_ref, golden_rel = logits(src, ids, dev, load_file(os.path.join(src, "golden.safetensors")))
                qnt, p_q, _ = logits(dst, ids, dev)
        except Exception as e:  # one architecture's failure must not hide the others' numbers
            result["models"][arch] = {"error": repr(e)[:1000]}
            print(arch, "FAILED", repr(e)[:1000], flush=True)
            continue
        changed = sorted(k for k in p_ref if not torch.equal(p_ref[k], p_q[k]))
        lp = torch.log_softmax(ref[:, :-1], dim=-1)
        lq = torch.log_softmax(qnt[:, :-1], dim=-1)
        kld = (lp.exp() * (lp - lq)).sum(-1).flatten()
        same = (ref[:, :-1].argmax(-1) == qnt[:, :-1].argmax(-1)).double().mean()
        row = {
            # this run's original model vs the fixture's golden logits (transformers on CUDA)
            "goldenLogitsMaxRel": golden_rel,
            "meanKld": float(kld.mean()),
            "maxKld": float(kld.max()),
            "sameTop": float(same),
            "tokens": int(kld.numel()),
            "quantizedTensors": len(quantized),
            # what the quantized model really loaded: parameters that differ from the original's
            "changedParameters": len(changed),
            "changedOutsideExperts": [k for k in changed if not EXPERT_PARAM.search(k)],
        }
        result["models"][arch] = row
        print(arch, json.dumps(row), flush=True)
        with open(out_path, "w") as f:
            json.dump(result, f, indent=1)


main()
