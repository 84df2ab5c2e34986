"""Dice, BCE and the objectness ranking loss against hand-computed values and known gradients."""

from __future__ import annotations

import math

import pytest
import torch

from autosod.models.losses import autosod_loss, bce_loss, dice_loss, ranking_loss
from autosod.models.outputs import NetOutput
from autosod.training.config import LossConfig


def test_dice_known_values() -> None:
    target = torch.zeros(4, 4)
    target[:2, :2] = 1  # 4 of 16 pixels
    # logits 0 -> p = 0.5 everywhere: 1 - (2 * 0.5 * 4 + 1) / (0.5 * 16 + 4 + 1) = 1 - 5 / 13
    assert dice_loss(torch.zeros(4, 4), target).item() == pytest.approx(8 / 13, abs=1e-6)
    # a confident exact prediction: p ~ target -> 1 - 9 / 9 = 0
    perfect = torch.where(target > 0, 30.0, -30.0)
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # the complement: intersection 0 -> 1 - 1 / (12 + 4 + 1)
    assert dice_loss(-perfect, target).item() == pytest.approx(16 / 17, abs=1e-6)


def test_bce_known_values() -> None:
    target = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    # logits 0: -log(0.5) for any target
    assert bce_loss(torch.zeros(2, 2), target).item() == pytest.approx(math.log(2), abs=1e-6)
    # p = 0.75 everywhere: targets 1, 0, 0.5, 1 -> -log .75, -log .25, -(.5 log .75 + .5 log .25)
    logits = torch.full((2, 2), math.log(3.0))
    expected = (-math.log(0.75) * 2 - math.log(0.25) - 0.5 * (math.log(0.75) + math.log(0.25))) / 4
    assert bce_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_losses_keep_leading_dimensions() -> None:
    logits, target = torch.randn(2, 3, 5, 5), torch.rand(2, 3, 5, 5)
    assert dice_loss(logits, target).shape == (2, 3)
    assert bce_loss(logits, target).shape == (2, 3)


def test_ranking_known_value_three_queries() -> None:
    scores = torch.tensor([[1.0, 0.0, 2.0]])
    mask_losses = torch.tensor([[0.3, 0.1, 0.2]])  # best query 1, then 2, then 0
    # pairs (better, worse): (1, 2): 2 - 0 + .1 = 2.1; (1, 0): 1 - 0 + .1 = 1.1;
    # (2, 0): 1 - 2 + .1 < 0 -> 0; mean over the 3 pairs
    value = ranking_loss(scores, mask_losses, margin=0.1)
    assert value.shape == (1,)
    assert value.item() == pytest.approx(3.2 / 3, abs=1e-6)


def test_ranking_no_pairs_costs_nothing() -> None:
    assert ranking_loss(torch.randn(2, 1), torch.rand(2, 1), margin=0.1).tolist() == [0.0, 0.0]
    tied = ranking_loss(torch.randn(1, 3), torch.full((1, 3), 0.4), margin=0.1)
    assert tied.item() == 0.0


def test_ranking_step_raises_the_better_query() -> None:
    """The sign SelfMask's released code appears to get wrong: descent must raise the better
    query's score and lower the worse one's."""
    scores = torch.tensor([[0.0, 0.0]], requires_grad=True)
    mask_losses = torch.tensor([[0.1, 0.5]])  # query 0 is the better one
    loss = ranking_loss(scores, mask_losses, margin=0.1)
    assert loss.item() == pytest.approx(0.1)
    loss.sum().backward()
    assert scores.grad.tolist() == [[-1.0, 1.0]]
    with torch.no_grad():
        stepped = scores - 0.5 * scores.grad
    assert stepped[0, 0] > 0 > stepped[0, 1]


def _output(masks: torch.Tensor, scores: torch.Tensor | None = None) -> NetOutput:
    if scores is None:
        scores = torch.zeros(masks.shape[:3])
    return NetOutput(masks=masks, scores=scores)


def test_autosod_loss_weights_images() -> None:
    torch.manual_seed(0)
    masks = torch.randn(2, 2, 3, 4, 4)  # L=2, B=2, Q=3
    scores = torch.randn(2, 2, 3)
    target = torch.rand(2, 8, 8)
    config = LossConfig(rank_weight=0.5)
    one = autosod_loss(_output(masks, scores), target, torch.ones(2), config)
    first = autosod_loss(_output(masks[:, :1], scores[:, :1]), target[:1], torch.ones(1), config)
    second = autosod_loss(_output(masks[:, 1:], scores[:, 1:]), target[1:], torch.ones(1), config)
    assert one.total.item() == pytest.approx((first.total + second.total).item() / 2, rel=1e-5)
    weighted = autosod_loss(_output(masks, scores), target, torch.tensor([3.0, 0.0]), config)
    assert weighted.total.item() == pytest.approx(3 * first.total.item() / 2, rel=1e-5)
    expected = config.bce_weight * one.bce + config.dice_weight * one.dice + 0.5 * one.rank
    assert one.total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_autosod_loss_known_value_and_deep_supervision() -> None:
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1  # top half
    good = torch.where(target[0] > 0, 30.0, -30.0)  # bce ~ 0, dice ~ 0
    flat = torch.zeros(4, 4)  # bce log 2, dice 1 - (2*.5*8+1)/(8+8+1) = 8/17
    masks = torch.stack([flat, good])[:, None, None]  # L=2 layers, B=1, Q=1
    config = LossConfig(rank_weight=0.0)
    deep = autosod_loss(_output(masks), target, torch.ones(1), config)
    assert deep.bce.item() == pytest.approx(math.log(2) / 2, abs=1e-5)
    assert deep.dice.item() == pytest.approx(8 / 17 / 2, abs=1e-5)
    last = autosod_loss(
        _output(masks), target, torch.ones(1), LossConfig(rank_weight=0.0, deep_supervision=False)
    )
    assert last.total.item() == pytest.approx(0.0, abs=1e-5)


def test_best_mode_supervises_only_the_closest_query() -> None:
    target = torch.zeros(1, 4, 4)
    target[0, :, :2] = 1
    good = torch.where(target[0] > 0, 30.0, -30.0)
    masks = torch.stack([torch.zeros(4, 4), good, -good])[None, None].clone().requires_grad_()
    config = LossConfig(rank_weight=0.0, mask_queries="best")
    terms = autosod_loss(_output(masks), target, torch.ones(1), config)
    assert terms.total.item() == pytest.approx(0.0, abs=1e-5)
    terms.total.backward()
    grads = masks.grad[0, 0].abs().flatten(1).sum(1)
    assert grads[0] == 0 and grads[2] == 0  # the other queries get no mask gradient
    every = autosod_loss(_output(masks), target, torch.ones(1), LossConfig(rank_weight=0.0))
    assert every.total.item() > 0.5  # "all" averages the two bad queries in


def test_autosod_loss_ranking_raises_the_better_query() -> None:
    target = torch.zeros(1, 4, 4)
    target[0, 1:3, 1:3] = 1
    good = torch.where(target[0] > 0, 5.0, -5.0)
    masks = torch.stack([-good, good])[None, None]  # query 1 is the better one
    scores = torch.zeros(1, 1, 2, requires_grad=True)
    terms = autosod_loss(_output(masks, scores), target, torch.ones(1), LossConfig())
    terms.total.backward()
    assert scores.grad[0, 0, 1] < 0 < scores.grad[0, 0, 0]
