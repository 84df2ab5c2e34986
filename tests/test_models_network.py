"""The AutoSOD network: shapes per decoder layer, choice of query at inference, weights, names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from autosod.models.autosod_net import DECODERS, AutoSodNet, build_network
from autosod.models.backbones import build_model
from autosod.models.config import BackboneConfig
from autosod.models.losses import autosod_loss, bce_loss, dice_loss, resize_target
from autosod.models.outputs import NetOutput, best_query_logits
from autosod.models.query_decoder import sine_position_2d
from autosod.training.config import LossConfig, ModelConfig

TINY = ModelConfig(
    input_size_px=64, pixel_dim=16, hidden_dim=32, decoder_layers=2, queries=3, heads=2, ffn_dim=32
)


@pytest.fixture(scope="module")
def tiny_net() -> AutoSodNet:
    torch.manual_seed(0)
    return build_network(TINY, pretrained=False).eval()


def test_query_decoder_shapes_per_layer(tiny_net: AutoSodNet) -> None:
    out = tiny_net(torch.randn(2, 3, 64, 96))
    assert out.masks.shape == (2, 2, 3, 16, 24)  # (layers, batch, queries, H / 4, W / 4)
    assert out.scores.shape == (2, 2, 3)
    assert not torch.equal(out.masks[0], out.masks[1])  # each layer predicts on its own


def test_fpn_decoder_and_stride_8() -> None:
    config = dataclasses.replace(TINY, decoder="fpn", output_stride=8)
    out = build_network(config, pretrained=False)(torch.randn(2, 3, 64, 64))
    assert out.masks.shape == (1, 2, 1, 8, 8) and out.scores.shape == (1, 2, 1)
    assert bool((out.scores == 0).all())


def test_vit_backbone_upsampled_to_stride_4() -> None:
    config = dataclasses.replace(TINY, backbone="test_vit", weights="hub", feature_indices=(2, 5))
    net = build_network(config, pretrained=False)
    assert net.backbone.strides == [16, 16]
    assert net(torch.randn(1, 3, 64, 64)).masks.shape == (2, 1, 3, 16, 16)


def test_every_parameter_gets_a_gradient(tiny_net: AutoSodNet) -> None:
    """DistributedDataParallel fails on parameters that take no part in the loss."""
    net = build_network(TINY, pretrained=False)
    out = net(torch.randn(2, 3, 64, 64))
    autosod_loss(out, torch.rand(2, 64, 64), torch.ones(2), LossConfig()).total.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert missing == []


def test_packaged_weights_and_their_normalisation() -> None:
    net = build_network(dataclasses.replace(TINY, input_size_px=128))
    reference, mean, std = build_model(BackboneConfig(model_name=TINY.backbone, input_size=128))
    assert mean == std == (0.5, 0.5, 0.5)
    assert net.backbone.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    ours = net.backbone.model.state_dict()
    theirs = reference.state_dict()
    assert ours.keys() <= theirs.keys() and len(ours) > 100
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = torch.zeros(1, 128, 128, 3, dtype=torch.uint8) + 255
    assert torch.allclose(net.preprocess(x), torch.ones(1, 3, 128, 128))


def test_best_query_logits_picks_the_highest_score() -> None:
    masks = torch.arange(2 * 2 * 3 * 4, dtype=torch.float32).view(2, 2, 3, 2, 2)  # L=2, B=2, Q=3
    scores = torch.tensor([[[9.0, 0.0, 0.0], [9.0, 0.0, 0.0]], [[0.0, 0.0, 1.0], [0.0, 2.0, 1.0]]])
    best = best_query_logits(NetOutput(masks=masks, scores=scores))
    assert torch.equal(best[0], masks[1, 0, 2]) and torch.equal(best[1], masks[1, 1, 1])


class _FixedDecoder(nn.Module):
    """Stands in for the query decoder: query 2 (highest score) marks the left half."""

    def forward(self, memory: torch.Tensor, pixel: torch.Tensor) -> NetOutput:
        batch, _, height, width = pixel.shape
        masks = torch.full((1, batch, 3, height, width), -20.0)
        masks[0, :, 2, :, : width // 2] = 20.0
        masks[0, :, 0] = 20.0  # a full mask on a low-score query
        scores = torch.tensor([0.0, -1.0, 3.0]).expand(1, batch, 3)
        return NetOutput(masks=masks, scores=scores)


def test_predict_returns_the_chosen_query_at_each_size() -> None:
    net = build_network(TINY, pretrained=False).eval()
    net.decoder = _FixedDecoder()
    images = np.zeros((2, 64, 64, 3), np.uint8)
    preds = net.predict(images, [(30, 40), (50, 20)], flip_average=False)
    assert [p.shape for p in preds] == [(30, 40), (50, 20)]
    assert all(p.dtype == np.float32 for p in preds)
    left, right = preds[0][:, :18], preds[0][:, 22:]
    assert left.min() > 0.99 and right.max() < 0.01  # query 2's left half, not query 0
    averaged = net.predict(images[:1], [(30, 40)], flip_average=True)[0]
    assert np.allclose(averaged, 0.5, atol=1e-3)  # left half averaged with its mirror


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="query, fpn"):
        ModelConfig(decoder="mlp")
    assert set(DECODERS) == {"query", "fpn"}
    with pytest.raises(ValueError, match=r"feature_indices must be increasing and < 5"):
        build_network(dataclasses.replace(TINY, feature_indices=(1, 7)), pretrained=False)


def test_sine_position_encoding() -> None:
    pos = sine_position_2d(3, 5, 8)
    assert pos.shape == (15, 8)
    grid = pos.view(3, 5, 8)
    assert torch.equal(grid[0, 0, :4], grid[0, 4, :4])  # y half constant along a row
    assert torch.equal(grid[0, 2, 4:], grid[2, 2, 4:])  # x half constant along a column
    # first frequency is 1: sin of the normalised coordinate (y + 1) / h * 2π
    assert grid[1, 0, 0].item() == pytest.approx(np.sin(2 / 3 * 2 * np.pi), abs=1e-6)
    assert len({tuple(r.tolist()) for r in pos}) == 15  # every position differs


def test_one_ranking_step_raises_the_better_query_in_the_network() -> None:
    """Through the whole network: one SGD step on the ranking term alone widens the score gap
    between the last layer's query whose mask is closest to the target and the farthest one."""
    torch.manual_seed(1)
    net = build_network(TINY, pretrained=False).eval()
    x = torch.randn(1, 3, 64, 64)
    target = torch.zeros(1, 64, 64)
    target[0, 16:48, 16:48] = 1
    out = net(x)
    last = out.masks[-1, 0]  # (Q, h, w)
    small = resize_target(target, tuple(last.shape[-2:])).expand_as(last)
    mask_losses = (bce_loss(last, small) + dice_loss(last, small)).detach()  # LossConfig()'s
    better, worse = int(mask_losses.argmin()), int(mask_losses.argmax())
    gap_before = (out.scores[-1, 0, better] - out.scores[-1, 0, worse]).item()
    loss = autosod_loss(out, target, torch.ones(1), LossConfig())
    net.zero_grad()
    loss.rank.backward()
    with torch.no_grad():
        for param in net.parameters():
            if param.grad is not None:
                param -= 1e-3 * param.grad
        after = net(x).scores[-1, 0]
    assert (after[better] - after[worse]).item() > gap_before
