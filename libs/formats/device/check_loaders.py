"""Load checkpoints written by make-checkpoints.mjs with transformers (and vLLM when installed)
and compare with moeq's own decoding. Run on the GPU machine:

  python3 check_loaders.py OUT_DIR FIXTURE_DIR   (FIXTURE_DIR holds golden.safetensors)

For every <model>-<format>/ in OUT_DIR: transformers' dequantized Linear weights vs
<model>-<format>.moeq-dequant.safetensors (max |diff| relative to max |w|, in the model dtype),
and logits vs the bf16 golden (top-1 agreement). Prints one JSON line per loader and format.
"""
import glob, json, os, sys, traceback
import torch
from safetensors.torch import load_file

out_dir, fixture = sys.argv[1], sys.argv[2]
golden = load_file(os.path.join(fixture, "golden.safetensors"))
ids = golden["input_ids"]


def tf_load(d, fmt):
    import transformers
    from transformers import AutoModelForCausalLM
    kw = {}
    if fmt == "fp8-block":
        cfg = json.load(open(os.path.join(d, "config.json")))["quantization_config"]
        kw["quantization_config"] = transformers.FineGrainedFP8Config(weight_block_size=tuple(cfg["weight_block_size"]), dequantize=True)
    if fmt == "compressed-tensors":
        kw["quantization_config"] = transformers.CompressedTensorsConfig(run_compressed=False)
    if fmt == "gpt-oss-mxfp4":
        kw["quantization_config"] = transformers.Mxfp4Config(dequantize=True)
    return AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map="cuda", **kw).eval()


def compare_weights(model, ours):
    worst, n = 0.0, 0
    params = dict(model.named_parameters())
    for name, w in ours.items():
        p = params.get(name)
        if p is None or p.shape != w.shape:
            continue
        ref = w.to(p.dtype).float()
        worst = max(worst, float((p.detach().float().cpu() - ref).abs().max() / ref.abs().max().clamp(min=1e-30)))
        n += 1
    return {"weights_compared": n, "max_rel_diff": worst}


for d in sorted(p for p in glob.glob(os.path.join(out_dir, "*")) if os.path.isdir(p)):
    fmt = os.path.basename(d).split("-", 1)[1]
    ours = load_file(d + ".moeq-dequant.safetensors")
    res = {"dir": os.path.basename(d), "loader": "transformers"}
    try:
        m = tf_load(d, fmt)
        res.update(compare_weights(m, ours))
        with torch.no_grad():
            lg = m(ids.cuda()).logits.float().cpu()
        res["top1_vs_golden"] = float((lg.argmax(-1) == golden["logits"].argmax(-1)).float().mean())
        del m
    except Exception as e:
        res["error"] = repr(e)[:400]
        traceback.print_exc(limit=2)
    print(json.dumps(res), flush=True)
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        print(json.dumps({"dir": os.path.basename(d), "loader": "vllm", "error": "vllm not installed"}), flush=True)
        continue
    res = {"dir": os.path.basename(d), "loader": "vllm"}
    try:
        llm = LLM(model=d, enforce_eager=True, max_model_len=512, gpu_memory_utilization=0.3)
        sp = SamplingParams(max_tokens=1, prompt_logprobs=1)
        o = llm.generate([{"prompt_token_ids": ids[0].tolist()}], sp)[0]
        top = [max(lp.items(), key=lambda kv: kv[1].logprob)[0] for lp in o.prompt_logprobs[1:]]
        ref = golden["logits"][0, :-1].argmax(-1).tolist()
        res["top1_vs_golden"] = sum(a == b for a, b in zip(top, ref)) / len(ref)
        del llm
    except Exception as e:
        res["error"] = repr(e)[:400]
    print(json.dumps(res), flush=True)
