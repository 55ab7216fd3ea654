"""Value tables for moeq's dtype conversions, made with PyTorch on the GPU machine.

python3 make_tables.py OUT.safetensors   (torch >= 2.7 for float8_e8m0fnu)

Every tensor is stored as raw bytes (U8 / F32 / U16) so that the reader under test needs no
float8 support to load it. Keys:
  <t>.decode      F32 [256]   value of each code of 8-bit type t, code order 0..255
  <t>.enc_in      F32 [N]     f32 inputs (edge cases, ties, random over the type's range)
  <t>.enc_out     U8  [N]     torch's code for each input: x.to(t).view(uint8)
  bf16.decode / f16.decode    F32 [65536] value of every 16-bit code
  bf16.enc_in / f16.enc_in    F32 [N];  bf16.enc_out / f16.enc_out  U16 [N]
metadata: torch version, device, seed.
"""
import sys
import torch
from safetensors.torch import save_file

torch.manual_seed(1234)
out = {}
f32 = torch.float32


def ties_and_neighbours(values: torch.Tensor) -> torch.Tensor:
    """Midpoints between consecutive representable values, and the floats just around them."""
    v = torch.unique(values[torch.isfinite(values)].to(torch.float64)).sort().values
    mid = ((v[1:] + v[:-1]) / 2).to(f32)
    up = torch.nextafter(mid, torch.full_like(mid, float("inf")))
    down = torch.nextafter(mid, torch.full_like(mid, float("-inf")))
    return torch.cat([mid, up, down, -mid, -up, -down])


def special(maxv: float) -> torch.Tensor:
    s = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), maxv, -maxv, maxv * 1.01,
         maxv * 2, -maxv * 2, 1e30, -1e30, 3.4e38, -3.4e38, 1e-30, -1e-30, 1e-45, 2 ** -126, 2 ** -149]
    return torch.tensor(s, dtype=f32)


def random_wide(n: int, lo_exp: int, hi_exp: int) -> torch.Tensor:
    e = torch.randint(lo_exp, hi_exp + 1, (n,)).to(f32)
    m = torch.rand(n) + 1.0
    sign = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
    return (sign * m * torch.pow(2.0, e)).to(f32)


eight = {"f8_e4m3": torch.float8_e4m3fn, "f8_e5m2": torch.float8_e5m2}
if hasattr(torch, "float8_e8m0fnu"):
    eight["f8_e8m0"] = torch.float8_e8m0fnu
ranges = {"f8_e4m3": (448.0, -12, 10), "f8_e5m2": (57344.0, -18, 17), "f8_e8m0": (2.0 ** 127, -130, 128)}
for name, t in eight.items():
    codes = torch.arange(256, dtype=torch.uint8)
    dec = codes.view(t).to(f32)
    out[f"{name}.decode"] = dec
    maxv, lo, hi = ranges[name]
    inp = torch.cat([special(maxv), ties_and_neighbours(dec), dec[torch.isfinite(dec)], random_wide(20000, lo, hi)])
    if name == "f8_e8m0":
        inp = inp.abs()  # e8m0 has no sign; torch's behaviour on negatives is not a contract
    out[f"{name}.enc_in"] = inp.contiguous()
    out[f"{name}.enc_out"] = inp.to(t).view(torch.uint8).contiguous()

for name, t, maxv, lo, hi in [("bf16", torch.bfloat16, 3.3895e38, -133, 127), ("f16", torch.float16, 65504.0, -25, 16)]:
    codes = torch.arange(65536, dtype=torch.int32).to(torch.int16)
    dec = codes.view(t).to(f32)
    out[f"{name}.decode"] = dec
    # ties: a random sample of midpoints (all of them would be too large to commit)
    ties = ties_and_neighbours(dec)
    ties = ties[torch.randperm(ties.numel())[:36000]]
    inp = torch.cat([special(maxv), ties, random_wide(36000, lo, hi)])
    out[f"{name}.enc_in"] = inp.contiguous()
    out[f"{name}.enc_out"] = inp.to(t).view(torch.int16).contiguous()

meta = {"torch": torch.__version__, "seed": "1234", "made_by": "libs/tensor/test/data/make_tables.py"}
save_file(out, sys.argv[1], metadata=meta)
print({k: tuple(v.shape) for k, v in out.items()}, meta)
