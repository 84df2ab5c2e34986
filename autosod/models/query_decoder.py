"""Transformer decoder with learned queries: per-query mask logits and an objectness score.

MaskFormer (Cheng, Schwing and Kirillov, NeurIPS 2021) and Mask2Former (CVPR 2022), as SelfMask
(Shin, Albanie and Xie, CVPRW 2022) uses them for salient objects. Learned query features attend
to the backbone's last feature map (projected to `hidden_dim`, plus a fixed 2-D sine position
encoding as in DETR), then to each other, then pass a feed-forward block; the learned query
position embeddings are added to the queries in every layer. After each layer, one shared head
turns the normalised queries into mask embeddings (an MLP) whose dot product with the pixel
decoder's embedding gives the mask logits, and into an objectness logit. Every layer's output
is returned, for deep supervision.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from autosod.models.outputs import NetOutput

__all__ = ["QueryDecoder", "sine_position_2d"]


def sine_position_2d(
    height: int, width: int, dim: int, *, device: torch.device | None = None
) -> torch.Tensor:
    """(height·width, dim) fixed encoding: dim / 2 channels for y, dim / 2 for x, each half
    sin and cos of the normalised coordinate (in (0, 2π]) at geometric frequencies (DETR)."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for a 2-D sine encoding, got {dim}")
    quarter = dim // 4
    freqs = 10000.0 ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 1) / height * 2 * math.pi
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 1) / width * 2 * math.pi
    y = ys[:, None] * freqs  # (h, quarter)
    x = xs[:, None] * freqs  # (w, quarter)
    y = torch.cat([y.sin(), y.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    x = torch.cat([x.sin(), x.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([y, x], dim=2).reshape(height * width, dim)


class _DecoderLayer(nn.Module):
    """Cross-attention to the memory, self-attention, feed-forward; residual + LayerNorm each."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(ffn_dim, dim),
        )  # fmt: skip
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(
        self, tgt: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor
    ) -> torch.Tensor:
        """tgt (B, Q, D), query_pos (1, Q, D), memory (B, N, D), pos (1, N, D) -> (B, Q, D)."""
        attended = self.cross(tgt + query_pos, memory + pos, memory, need_weights=False)[0]
        tgt = self.norms[0](tgt + self.drop(attended))
        q = tgt + query_pos
        tgt = self.norms[1](tgt + self.drop(self.self_attn(q, q, tgt, need_weights=False)[0]))
        return self.norms[2](tgt + self.drop(self.ffn(tgt)))


class QueryDecoder(nn.Module):
    """memory (B, C, h, w) + pixel embedding (B, P, H', W') -> `NetOutput` with one entry per
    decoder layer: masks (L, B, Q, H', W') logits, scores (L, B, Q) objectness logits."""

    def __init__(
        self,
        *,
        memory_channels: int,
        pixel_dim: int,
        hidden_dim: int,
        layers: int,
        queries: int,
        heads: int,
        ffn_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.input_proj = nn.Conv2d(memory_channels, hidden_dim, 1)
        self.query_feat = nn.Embedding(queries, hidden_dim)
        self.query_pos = nn.Embedding(queries, hidden_dim)
        self.layers = nn.ModuleList(
            _DecoderLayer(hidden_dim, heads, ffn_dim, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(hidden_dim)
        self.mask_embed = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, pixel_dim),
        )  # fmt: skip
        self.score = nn.Linear(hidden_dim, 1)

    def _predict(self, tgt: torch.Tensor, pixel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        normed = self.norm(tgt)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(normed), pixel)
        return masks, self.score(normed).squeeze(-1)

    def forward(self, memory: torch.Tensor, pixel: torch.Tensor) -> NetOutput:
        batch, _, height, width = memory.shape
        memory = self.input_proj(memory).flatten(2).transpose(1, 2)  # (B, N, D)
        pos = sine_position_2d(height, width, memory.shape[-1], device=memory.device)[None]
        tgt = self.query_feat.weight[None].expand(batch, -1, -1)
        query_pos = self.query_pos.weight[None]
        masks, scores = [], []
        for layer in self.layers:
            tgt = layer(tgt, query_pos, memory, pos.to(memory.dtype))
            layer_masks, layer_scores = self._predict(tgt, pixel)
            masks.append(layer_masks)
            scores.append(layer_scores)
        return NetOutput(masks=torch.stack(masks), scores=torch.stack(scores))
