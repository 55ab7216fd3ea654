"""PyTorch reference for native/bench/gpu/engine-layer.ts: one Qwen3-30B-A3B-shaped decoder layer
forward (hidden 2048, 32/4 heads, head dim 128, 128 experts top-8, moe 768) written the way
transformers' Qwen3Moe modules compute it: RMSNorm, q/k/v/o Linear, per-head q/k RMSNorm, RoPE,
scaled_dot_product_attention (causal, GQA) over groups of sequences, softmax top-k routing
renormalised, then the per-expert loop (index tokens, gate/up/down, index_add_).
Usage: python3 engine_layer_ref.py OUT_JSON SEQS SEQ_LEN PRECISION(tf32|bf16)"""
import json, sys, time
import torch, torch.nn.functional as F

out_path, B, T, prec = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
dev = "cuda"
H, NH, NKV, D, E, K, I = 2048, 32, 4, 128, 128, 8, 768
torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
torch.backends.cudnn.allow_tf32 = prec == "tf32"
dt = torch.float32 if prec == "tf32" else torch.bfloat16
torch.manual_seed(0)
w = lambda *s: (torch.randn(*s, device=dev) * 0.02).to(torch.bfloat16).to(dt)
Wq, Wk, Wv, Wo = w(NH * D, H), w(NKV * D, H), w(NKV * D, H), w(H, NH * D)
Wr = w(E, H)
Wg, Wu, Wd = w(E, I, H), w(E, I, H), w(E, H, I)
n_in = torch.ones(H, device=dev, dtype=dt); n_post = torch.ones(H, device=dev, dtype=dt)
n_q = torch.ones(D, device=dev, dtype=dt); n_k = torch.ones(D, device=dev, dtype=dt)
inv = 1.0 / (1e6 ** (torch.arange(0, D, 2, device=dev, dtype=torch.float32) / D))
ang = torch.arange(T, device=dev, dtype=torch.float32)[:, None] * inv[None]
cos = torch.cat([ang.cos(), ang.cos()], -1).to(dt); sin = torch.cat([ang.sin(), ang.sin()], -1).to(dt)

def rms(x, g, eps=1e-6):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * g

def rot(x):
    a, b = x.chunk(2, -1)
    return torch.cat([-b, a], -1)

def attention(h, per=8):
    out = torch.empty_like(h)
    for b0 in range(0, B, per):
        nb = min(per, B - b0)
        x = rms(h[b0 * T:(b0 + nb) * T], n_in)
        q = rms((x @ Wq.T).view(nb, T, NH, D), n_q).transpose(1, 2)
        k = rms((x @ Wk.T).view(nb, T, NKV, D), n_k).transpose(1, 2)
        v = (x @ Wv.T).view(nb, T, NKV, D).transpose(1, 2)
        q = q * cos + rot(q) * sin
        k = k * cos + rot(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        out[b0 * T:(b0 + nb) * T] = h[b0 * T:(b0 + nb) * T] + a.transpose(1, 2).reshape(nb * T, NH * D) @ Wo.T
    return out

def moe(x):
    logits = x @ Wr.T
    p = F.softmax(logits, dim=-1, dtype=torch.float)
    wts, sel = torch.topk(p, K, dim=-1)
    wts = (wts / wts.sum(-1, keepdim=True)).to(x.dtype)
    out = torch.zeros_like(x)
    mask = F.one_hot(sel, E).permute(2, 1, 0)
    hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for e in hit.flatten().tolist():
        idx, tok = torch.where(mask[e])
        cur = x[tok]
        y = (F.silu(cur @ Wg[e].T) * (cur @ Wu[e].T)) @ Wd[e].T
        out.index_add_(0, tok, (y * wts[tok, idx, None]).to(x.dtype))
    return out

def sync(): torch.cuda.synchronize()

def layer(nb_seqs):
    global B
    keep = B; B = nb_seqs
    h = (torch.rand(B * T, H, device=dev) * 2 - 1).to(dt)
    sync(); t = {}; t0 = time.time()
    r = attention(h); x = rms(r, n_post); sync(); t["attention"] = time.time() - t0; t0 = time.time()
    y = moe(x); sync(); t["moe"] = time.time() - t0; t0 = time.time()
    o = r + y; sync(); t["finish"] = time.time() - t0
    t["total"] = t["attention"] + t["moe"] + t["finish"]
    del h, r, x, y, o
    B = keep
    return t

with torch.no_grad():
    layer(2)
    torch.cuda.reset_peak_memory_stats()
    t = layer(B)
t.update({"precision": prec, "seqs": B, "seqLen": T, "tokens": B * T, "peakGiB": torch.cuda.max_memory_allocated() / 2**30,
          "gpu": torch.cuda.get_device_name()})
print(f"pytorch {prec}: {B}x{T} tokens, attention {t['attention']:.3f} s, moe {t['moe']:.3f} s, total {t['total']:.3f} s, peak {t['peakGiB']:.1f} GiB")
json.dump(t, open(out_path, "w"), indent=1)
