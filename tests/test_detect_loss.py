"""Multibox loss: 3:1 hard negatives, zero at perfect predictions, gradients into the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.build import build
from rnnpool_nas.detect import anchors_for, encode, hard_negatives, match_anchors, multibox_loss

ANCHORS = np.array([[x, y, s, s] for s in (16.0, 48.0) for y in range(8, 128, 16) for x in range(8, 128, 16)], dtype=np.float64)
FACES = [np.array([[10.0, 12.0, 30.0, 30.0], [60.0, 50.0, 110.0, 100.0]]), np.zeros((0, 4)), np.array([[70.0, 8.0, 86.0, 26.0]])]


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n, a = len(FACES), len(ANCHORS)
    loc = torch.randn(n, a, 4, generator=g, requires_grad=True)
    conf = torch.randn(n, a, 2, generator=g, requires_grad=True)
    return loc, conf, match_anchors(ANCHORS, FACES)


def test_hard_negatives_are_three_per_positive_and_the_hardest():
    loc, conf, m = _batch()
    neg = hard_negatives(conf, m.labels)
    pos_counts = m.num_positives.tolist()
    assert pos_counts[0] > 0 and pos_counts[1] == 0 and pos_counts[2] > 0
    # 3 per positive; the face-free image still gets 3 (as if it had one positive)
    assert neg.sum(dim=1).tolist() == [3 * pos_counts[0], 3, 3 * pos_counts[2]]
    assert not (neg & (m.labels == 1)).any()
    for i in range(len(FACES)):  # the chosen ones have the highest background loss among negatives
        bg = (torch.logsumexp(conf[i], -1) - conf[i, :, 0]).detach().numpy()
        candidates = np.nonzero(m.labels[i].numpy() == 0)[0]
        hardest = candidates[np.argsort(-bg[candidates], kind="stable")[: int(neg[i].sum())]]
        assert set(np.nonzero(neg[i].numpy())[0]) == set(hardest)


def test_loss_equals_its_definition():
    loc, conf, m = _batch(1)
    out = multibox_loss(loc, conf, ANCHORS, m)
    pos = m.labels == 1
    num_pos = int(pos.sum())
    neg = hard_negatives(conf, m.labels)
    assert out.num_pos == num_pos and out.num_neg == int(neg.sum()) == 3 * num_pos + 3
    anchor_idx = torch.nonzero(pos)[:, 1]
    targets = encode(m.boxes[pos].double(), torch.as_tensor(ANCHORS)[anchor_idx]).float()
    loc_ref = F.smooth_l1_loss(loc[pos], targets, reduction="sum") / num_pos
    chosen = pos | neg
    conf_ref = F.cross_entropy(conf[chosen], m.labels[chosen], reduction="sum") / num_pos
    torch.testing.assert_close(out.loc, loc_ref)
    torch.testing.assert_close(out.conf, conf_ref)
    torch.testing.assert_close(out.total, loc_ref + conf_ref)


def test_perfect_predictions_cost_nothing():
    _, _, m = _batch()
    pos = m.labels == 1
    loc = torch.zeros(len(FACES), len(ANCHORS), 4)
    anchor_idx = torch.nonzero(pos)[:, 1]
    loc[pos] = encode(m.boxes[pos].double(), torch.as_tensor(ANCHORS)[anchor_idx]).float()
    conf = torch.where(pos[..., None], torch.tensor([-60.0, 60.0]), torch.tensor([60.0, -60.0]))
    out = multibox_loss(loc, conf, ANCHORS, m)
    assert out.num_pos > 0
    assert float(out.loc) < 1e-6 and float(out.conf) < 1e-6 and float(out.total) < 1e-6


def test_gradients_reach_predictions_and_a_batch_without_faces_works():
    loc, conf, m = _batch(2)
    out = multibox_loss(loc, conf, ANCHORS, m)
    out.total.backward()
    pos = m.labels == 1
    assert loc.grad[pos].abs().sum() > 0 and loc.grad[~pos].abs().sum() == 0  # only positives regress
    used = pos | hard_negatives(conf, m.labels)
    assert conf.grad[used].abs().sum() > 0 and conf.grad[~used].abs().sum() == 0
    empty = match_anchors(ANCHORS, [np.zeros((0, 4))] * 2)
    loc2 = torch.randn(2, len(ANCHORS), 4, requires_grad=True)
    conf2 = torch.randn(2, len(ANCHORS), 2, requires_grad=True)
    out2 = multibox_loss(loc2, conf2, ANCHORS, empty)
    assert out2.num_pos == 0 and out2.num_neg == 6 and float(out2.loc.detach()) == 0.0 and float(out2.conf.detach()) > 0
    out2.total.backward()  # normalised by max(0, 1) = 1
    assert torch.isfinite(conf2.grad).all() and conf2.grad.abs().sum() > 0


def test_negatives_never_exceed_the_background_anchors():
    anchors = ANCHORS[:4]
    faces = [np.array([[0.0, 0.0, 16.0, 16.0]])]
    m = match_anchors(anchors, faces)
    out = multibox_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 2), anchors, m)
    assert out.num_pos == 1 and out.num_neg == 3
    m2 = match_anchors(anchors, [np.array([[0.0, 0.0, 16.0, 16.0], [16.0, 0.0, 32.0, 16.0]])])
    assert multibox_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 2), anchors, m2).num_neg == 2


@pytest.mark.parametrize("name", ["rnnpool-face-m4"])
def test_loss_trains_a_spec_net(name):
    torch.manual_seed(0)
    spec = get_preset(name, input=(96, 128, 1))
    model = build(spec)
    anchors = anchors_for(spec)
    faces = [np.array([[20.0, 20.0, 52.0, 56.0]]), np.array([[70.0, 30.0, 86.0, 48.0], [5.0, 60.0, 40.0, 92.0]])]
    matches = match_anchors(anchors, faces)
    loc, conf = model(torch.randn(2, 1, 96, 128))
    out = multibox_loss(loc, conf, anchors, matches)
    out.total.backward()
    stem = model.blocks[0][0].weight
    assert torch.isfinite(out.total) and stem.grad is not None and stem.grad.abs().sum() > 0
    assert all(p.grad is not None for h in model.heads for p in h.parameters())
