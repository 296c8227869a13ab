"""Time one SD1.5 UNet denoising step with classifier-free guidance in PyTorch on the CPU.

The baseline of the fast CPU backend's benchmark (bench/README.md, "CPU against PyTorch"): the same
step as `npm run bench` times (UNet on the [uncond; cond] batch, then u + g (c - u)), the same
architecture and random weights, on the same machine and thread count. It is started by
`node bench/dist/pytorch_compare.js`, which times our backend in the same run; it also runs alone:

    bench/pytorch/.venv/bin/python bench/pytorch/unet_step.py --resolution 128 --threads 2

When diffusers is installed its UNet2DConditionModel is built from the config; otherwise (no diffusers
wheel here) the model below, written in plain torch from the same config.json
(packages/unet/src/configs/sd15_unet.json), mirroring diffusers v0.29.2's module tree
(src/diffusers/models/unets/unet_2d_condition.py, unet_2d_blocks.py, resnet.py,
transformers/transformer_2d.py, attention.py): CrossAttnDownBlock2D / DownBlock2D / UNetMidBlock2DCrossAttn /
UpBlock2D / CrossAttnUpBlock2D, ResnetBlock2D with the time embedding added after conv1,
Transformer2DModel with 1x1 proj_in/proj_out and BasicTransformerBlock (self-attention, cross-attention
on the 77x768 text context, GEGLU feed-forward), attention by torch's scaled_dot_product_attention as
diffusers' AttnProcessor2_0 does. The parameter count printed must be 859,520,964 (the released SD1.5
UNet); the script checks it.

Prints one JSON object on stdout: torch version, threads, per-step wall times and process CPU times
(all threads), their medians, parameters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

CONFIG = os.path.join(os.path.dirname(__file__), '..', '..', 'packages', 'unet', 'src', 'configs', 'sd15_unet.json')
SD15_PARAMS = 859_520_964


class ResnetBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    def __init__(self, dim: int, ctx: int | None, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx or dim, dim, bias=False)
        self.to_v = nn.Linear(ctx or dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        b, n, c = x.shape
        split = lambda t: t.view(b, -1, self.heads, c // self.heads).transpose(1, 2)
        o = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx)))
        return self.to_out[0](o.transpose(1, 2).reshape(b, n, c))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, ctx: int, heads: int):
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim, None, heads)
        self.norm2, self.attn2 = nn.LayerNorm(dim), Attention(dim, ctx, heads)
        self.norm3, self.ff = nn.LayerNorm(dim), FeedForward(dim)

    def forward(self, x, ctx):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), ctx) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    def __init__(self, dim: int, ctx: int, heads: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(dim, ctx, heads)])
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x, ctx):
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for blk in self.transformer_blocks:
            t = blk(t, ctx)
        return self.proj_out(t.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()) + x


class Downsample2D(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class DownBlock(nn.Module):
    def __init__(self, cin, cout, temb, n, attn, ctx, heads, groups, eps, down):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if i == 0 else cout, cout, temb, groups, eps) for i in range(n)])
        self.attentions = nn.ModuleList([Transformer2DModel(cout, ctx, heads, groups) for _ in range(n)]) if attn else None
        self.downsamplers = nn.ModuleList([Downsample2D(cout)]) if down else None

    def forward(self, x, temb, ctx):
        skips = []
        for i, r in enumerate(self.resnets):
            x = r(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, ctx)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    def __init__(self, cin, cout, prev, temb, n, attn, ctx, heads, groups, eps, up):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D((prev if i == 0 else cout) + (cin if i == n - 1 else cout), cout, temb, groups, eps) for i in range(n)])
        self.attentions = nn.ModuleList([Transformer2DModel(cout, ctx, heads, groups) for _ in range(n)]) if attn else None
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if up else None

    def forward(self, x, skips, temb, ctx):
        for i, r in enumerate(self.resnets):
            x = r(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x, ctx)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    def __init__(self, c, temb, ctx, heads, groups, eps):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, temb, groups, eps), ResnetBlock2D(c, c, temb, groups, eps)])
        self.attentions = nn.ModuleList([Transformer2DModel(c, ctx, heads, groups)])

    def forward(self, x, temb, ctx):
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, ctx), temb)


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(cin, dim), nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class UNet2DConditionModel(nn.Module):
    """SD1.5's UNet from its config.json (the keys this architecture reads)."""

    def __init__(self, cfg: dict):
        super().__init__()
        ch = cfg['block_out_channels']
        heads, ctx, groups, eps = cfg['attention_head_dim'], cfg['cross_attention_dim'], cfg['norm_num_groups'], cfg['norm_eps']
        n, temb = cfg['layers_per_block'], ch[0] * 4
        self.flip, self.shift, self.ch0 = cfg['flip_sin_to_cos'], cfg['freq_shift'], ch[0]
        self.conv_in = nn.Conv2d(cfg['in_channels'], ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg['down_block_types']):
            self.down_blocks.append(DownBlock(ch[max(i - 1, 0)], ch[i], temb, n, kind.startswith('CrossAttn'), ctx, heads, groups, eps,
                                              i < len(ch) - 1))
        self.mid_block = MidBlock(ch[-1], temb, ctx, heads, groups, eps)
        rev = list(reversed(ch))
        self.up_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg['up_block_types']):
            self.up_blocks.append(UpBlock(rev[min(i + 1, len(ch) - 1)], rev[i], rev[max(i - 1, 0)], temb, n + 1,
                                          kind.startswith('CrossAttn'), ctx, heads, groups, eps, i < len(ch) - 1))
        self.conv_norm_out = nn.GroupNorm(groups, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], cfg['out_channels'], 3, padding=1)

    def time_proj(self, t):
        # diffusers get_timestep_embedding(t, ch0, flip_sin_to_cos, downscale_freq_shift)
        half = self.ch0 // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - self.shift))
        e = t[:, None].float() * freqs[None]
        e = torch.cat([torch.sin(e), torch.cos(e)], dim=-1)
        return torch.cat([e[:, half:], e[:, :half]], dim=-1) if self.flip else e

    def forward(self, x, t, ctx):
        temb = self.time_embedding(self.time_proj(t))
        x = self.conv_in(x)
        skips = [x]
        for blk in self.down_blocks:
            x, s = blk(x, temb, ctx)
            skips += s
        x = self.mid_block(x, temb, ctx)
        for blk in self.up_blocks:
            k = len(blk.resnets)
            x = blk(x, skips[-k:], temb, ctx)
            del skips[-k:]
        return self.conv_out(F.silu(self.conv_norm_out(x)))


def build(cfg: dict) -> tuple[nn.Module, str]:
    try:
        from diffusers import UNet2DConditionModel as DiffusersUNet  # type: ignore
        return DiffusersUNet.from_config(cfg), 'diffusers.UNet2DConditionModel'
    except ImportError:
        return UNet2DConditionModel(cfg), 'plain torch (bench/pytorch/unet_step.py), diffusers not installed'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--resolution', type=int, default=128, help='pixels (latent = /8), default 128')
    ap.add_argument('--threads', type=int, default=2, help='torch.set_num_threads (default 2)')
    ap.add_argument('--steps', type=int, default=3, help='timed steps (default 3)')
    ap.add_argument('--warmup', type=int, default=1, help='untimed steps first (default 1)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(CONFIG) as f:
        cfg = json.load(f)
    model, impl = build(cfg)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    if params != SD15_PARAMS:
        sys.exit(f'unet_step.py: built {params} parameters, expected {SD15_PARAMS} (the SD1.5 UNet); the model does not match')
    h = a.resolution // 8
    latents = torch.randn(1, 4, h, h)
    context = torch.randn(2, 77, cfg['cross_attention_dim'])
    guidance = 7.5
    times, cpu_times = [], []
    with torch.inference_mode():
        for i in range(a.warmup + a.steps):
            c0 = time.process_time()
            t0 = time.perf_counter()
            x = torch.cat([latents, latents])
            out = model(x, torch.full((2,), 500.0 - i), context)
            out = out.sample if hasattr(out, 'sample') else out
            u, c = out.chunk(2)
            _ = u + guidance * (c - u)
            dt = time.perf_counter() - t0
            if i >= a.warmup:
                times.append(dt)
                cpu_times.append(time.process_time() - c0)
            print(f'step {i + 1}/{a.warmup + a.steps}: {dt:.3f} s{" (warm-up)" if i < a.warmup else ""}', file=sys.stderr)
    print(json.dumps({
        'implementation': impl, 'torch': torch.__version__, 'threads': torch.get_num_threads(),
        'mkldnn': torch.backends.mkldnn.is_available(), 'cpu_capability': torch.backends.cpu.get_cpu_capability(),
        'resolution': a.resolution, 'params': params, 'stepSeconds': times, 'medianSeconds': statistics.median(times),
        'cpuSeconds': cpu_times, 'medianCpuSeconds': statistics.median(cpu_times),
    }))


if __name__ == '__main__':
    main()
