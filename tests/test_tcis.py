"""Tests for Token Causal Importance Selection (cmpose.models.tcis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cmpose.data.readers import read_annotations
from cmpose.keypoints import FLIP_INDEX, JOINT_INDEX, NUM_JOINTS
from cmpose.models.cmpose import CMPose
from cmpose.models.config import AuxConfig, BackboneConfig, EncoderConfig, FTEConfig, HeadConfig, ModelConfig
from cmpose.models.tcis import (
    keep_count,
    keypoint_hits,
    keypoint_recall,
    keypoint_token_index,
    select_topk,
    supervised_joints,
    token_importance,
)


def _hand_attention() -> torch.Tensor:
    """(1, 2 heads, J + L = 2 + 3, 5); rows 0-1 are the keypoint queries."""
    head0 = torch.tensor(
        [
            [0.1, 0.1, 0.5, 0.2, 0.1],
            [0.2, 0.0, 0.1, 0.1, 0.6],
            [0.2, 0.2, 0.2, 0.2, 0.2],
            [0.2, 0.2, 0.2, 0.2, 0.2],
            [0.2, 0.2, 0.2, 0.2, 0.2],
        ]
    )
    head1 = torch.tensor(
        [
            [0.0, 0.2, 0.3, 0.4, 0.1],
            [0.1, 0.1, 0.3, 0.3, 0.2],
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    return torch.stack([head0, head1])[None]


def test_importance_matches_hand_computation() -> None:
    attn = _hand_attention()
    # Visual token 0 (column 2): mean over heads of (0.5 + 0.1) and (0.3 + 0.3) = (0.6 + 0.6) / 2.
    expected = torch.tensor([[0.6, 0.5, 0.5]])
    assert torch.allclose(token_importance(attn, num_keypoints=2), expected)
    # The keypoint rows alone give the same result; visual-query rows must not matter.
    assert torch.allclose(token_importance(attn[:, :, :2], num_keypoints=2), expected)
    with pytest.raises(ValueError):
        token_importance(attn[0], num_keypoints=2)


def test_importance_gradient_reaches_keypoint_rows_only() -> None:
    attn = _hand_attention().requires_grad_(True)
    token_importance(attn, num_keypoints=2).sum().backward()
    expected = torch.zeros_like(attn)
    expected[:, :, :2, 2:] = 0.5  # d(mean over 2 heads)/d entry
    assert torch.equal(attn.grad, expected)


def test_select_topk_hand_built_with_ties() -> None:
    tokens = torch.arange(5.0)[None, :, None].repeat(1, 1, 2)  # token i == (i, i)
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.5, 0.2]])
    sel = select_topk(tokens, scores, k=3)
    assert sel.kept_idx.tolist() == [[1, 3, 2]]  # descending; the tie 1 vs 3 goes to the lower index
    assert sel.rest_idx.tolist() == [[0, 4]]
    assert sel.kept[0, :, 0].tolist() == [1.0, 3.0, 2.0]
    assert sel.rest[0, :, 0].tolist() == [0.0, 4.0]
    assert sel.kept_idx.dtype == torch.long and sel.rest_idx.dtype == torch.long


def test_select_topk_partition_and_gather_on_random_input() -> None:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(3, 20, 4, generator=g)
    scores = torch.rand(3, 20, generator=g)
    sel = select_topk(tokens, scores, k=8)
    assert sel.kept.shape == (3, 8, 4) and sel.rest.shape == (3, 12, 4)
    for b in range(3):
        both = torch.cat([sel.kept_idx[b], sel.rest_idx[b]])
        assert sorted(both.tolist()) == list(range(20))
        assert set(sel.kept_idx[b].tolist()) == set(scores[b].topk(8).indices.tolist())
        kept_scores = scores[b, sel.kept_idx[b]]
        assert torch.all(kept_scores[:-1] >= kept_scores[1:])
        assert kept_scores.min() >= scores[b, sel.rest_idx[b]].max()
        assert torch.all(sel.rest_idx[b, 1:] > sel.rest_idx[b, :-1])
        assert torch.equal(sel.kept[b], tokens[b, sel.kept_idx[b]])
        assert torch.equal(sel.rest[b], tokens[b, sel.rest_idx[b]])


@pytest.mark.parametrize("k", [0, 6])
def test_select_topk_extremes(k: int) -> None:
    tokens = torch.randn(2, 6, 3)
    sel = select_topk(tokens, torch.rand(2, 6), k=k)
    assert sel.kept.shape == (2, k, 3) and sel.rest.shape == (2, 6 - k, 3)
    if k == 0:
        assert torch.equal(sel.rest, tokens)


@pytest.mark.parametrize("k", [-1, 7])
def test_select_topk_rejects_bad_k(k: int) -> None:
    with pytest.raises(ValueError, match=rf"\[0, 6\], got k={k}"):
        select_topk(torch.randn(1, 6, 3), torch.rand(1, 6), k=k)


def test_selection_has_no_gradient_but_tokens_do() -> None:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 7, 3, generator=g, requires_grad=True)
    scores = torch.rand(2, 7, generator=g, requires_grad=True)
    sel = select_topk(tokens, scores, k=3)
    assert not sel.kept_idx.requires_grad
    sel.kept.sum().backward()
    assert scores.grad is None
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask.scatter_(1, sel.kept_idx, True)
    assert torch.equal(tokens.grad, mask[:, :, None].float().expand(2, 7, 3))

    # Backprop through the importance itself does reach the attention that produced the scores.
    attn = torch.rand(2, 2, 9, 9, generator=g).softmax(-1).requires_grad_(True)
    importance = token_importance(attn, num_keypoints=2)
    sel = select_topk(tokens.detach(), importance, k=3)
    assert not sel.kept.requires_grad
    importance.sum().backward()
    assert attn.grad is not None and attn.grad.abs().sum() > 0


def test_keep_count() -> None:
    assert keep_count(576, 0.5) == 288
    assert keep_count(10, 0.7) == 7
    assert keep_count(3, 0.01) == 1
    assert keep_count(5, 0.0) == 0
    assert keep_count(0, 0.5) == 0
    assert keep_count(5, 1.0) == 5
    with pytest.raises(ValueError):
        keep_count(5, 1.5)


def test_keypoint_token_index_hand_made() -> None:
    # 192 x 256 crop, 16 x 12 grid of 16-pixel cells; pixel i covers [i - 0.5, i + 0.5].
    xy = torch.tensor(
        [[[0.0, 0.0], [15.4, 15.4], [15.6, 0.0], [191.0, 255.0], [-50.0, 300.0], [float("nan"), 20.0]]]
    )
    idx = keypoint_token_index(xy, image_size=(192, 256), grid=(16, 12), frame=0, tokens_per_frame=192)
    assert idx.dtype == torch.long
    assert idx.tolist() == [[0, 0, 1, 191, 180, 12]]
    idx1 = keypoint_token_index(xy, image_size=(192, 256), grid=(16, 12), frame=1, tokens_per_frame=192)
    assert torch.equal(idx1, idx + 192)
    with pytest.raises(ValueError):
        keypoint_token_index(xy, image_size=(192, 256), grid=(16, 12), frame=0, tokens_per_frame=100)


def test_keypoint_recall_hand_made() -> None:
    kept_idx = torch.tensor([[1, 5, 7], [0, 2, 4]])
    kp_idx = torch.tensor([[5, 2, 7, 9], [4, 4, 3, 0]])
    valid = torch.tensor([[True, True, False, True], [True, False, True, True]])
    assert keypoint_hits(kept_idx, kp_idx).tolist() == [[True, False, True, False], [True, True, False, True]]
    # Valid: sample 0 -> 5 hit, 2 miss, 9 miss; sample 1 -> 4 hit, 3 miss, 0 hit: 3 of 6.
    assert keypoint_recall(kept_idx, kp_idx, valid) == pytest.approx(0.5)
    assert math.isnan(keypoint_recall(kept_idx, kp_idx, torch.zeros(2, 4, dtype=torch.bool)))


# --- supervised joints ----------------------------------------------------------------------------


def test_importance_sums_only_the_supervised_joints() -> None:
    attn = torch.softmax(torch.randn(2, 3, 4 + 6, 4 + 6, generator=torch.Generator().manual_seed(0)), -1)
    joints = torch.tensor([True, False, True, False])
    got = token_importance(attn, 4, joints)
    expected = attn[:, :, [0, 2], 4:].mean(dim=1).sum(dim=1)
    torch.testing.assert_close(got, expected)
    # An unsupervised joint's attention does not move the scores at all.
    noisy = attn.clone()
    noisy[:, :, 1, 4:] = torch.rand(2, 3, 6)
    torch.testing.assert_close(token_importance(noisy, 4, joints), got)
    assert not torch.equal(token_importance(noisy, 4), token_importance(attn, 4))
    torch.testing.assert_close(
        token_importance(attn, 4, torch.ones(4, dtype=torch.bool)), token_importance(attn, 4)
    )
    with pytest.raises(ValueError, match="joints"):
        token_importance(attn, 4, torch.ones(3, dtype=torch.bool))


def test_supervised_joints_from_keypoints() -> None:
    a = np.zeros((4, 3))
    a[0, 2] = 2
    b = np.zeros((4, 3))
    b[2] = (10.0, 5.0, 1)
    assert supervised_joints([a, b], 4).tolist() == [True, False, True, False]
    # With flips a joint is also trained from its mirror (joints 2 and 3 a left/right pair).
    assert supervised_joints([a, b], 4, flip_index=[0, 1, 3, 2]).tolist() == [True, False, True, True]
    assert supervised_joints([], 4).tolist() == [False] * 4
    with pytest.raises(ValueError, match="joints"):
        supervised_joints([np.zeros((3, 3))], 4)


def test_posetrack_sample_never_labels_the_ears(pt18_sample) -> None:
    people = read_annotations(pt18_sample / "annotations" / "val").people
    assert people
    joints = supervised_joints((p.keypoints for p in people), NUM_JOINTS, FLIP_INDEX)
    ears = [JOINT_INDEX["left_ear"], JOINT_INDEX["right_ear"]]
    assert joints[ears].tolist() == [False, False]
    assert int(joints.sum()) == NUM_JOINTS - 2  # every other joint is labelled somewhere


def _tiny_stage2() -> CMPose:
    torch.manual_seed(0)
    cfg = ModelConfig(
        stage=2,
        num_joints=NUM_JOINTS,
        backbone=BackboneConfig(size="tiny", embed_dim=32, depth=1, num_heads=2, stem_channels=0),
        head=HeadConfig(deconv_channels=(16, 16)),
        encoder=EncoderConfig(depth=1, num_heads=2, keypoint_head_hidden=32),
        aux=AuxConfig(decoder_hidden=32),
        fte=FTEConfig(num_heads=2, depth=1),
    )
    return CMPose(cfg, (48, 64), (12, 16), num_frames=3).eval()


def test_model_scores_with_its_supervised_joints() -> None:
    model = _tiny_stage2()
    assert model.supervised_joints.dtype == torch.bool and model.supervised_joints.all()
    clip = torch.randn(2, 3, 3, 64, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        every = model(clip)["importance"]
        ears = [JOINT_INDEX["left_ear"], JOINT_INDEX["right_ear"]]
        model.supervised_joints[ears] = False
        without = model(clip)["importance"]
    assert not torch.allclose(every, without)
    # Saved with the weights (test and infer rebuild the model from a checkpoint) ...
    state = model.state_dict()
    assert state["supervised_joints"][ears].tolist() == [False, False]
    fresh = _tiny_stage2()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.supervised_joints, model.supervised_joints)
    # ... a checkpoint from before the buffer loads strictly, as "all joints" ...
    del state["supervised_joints"]
    old = _tiny_stage2()
    old.load_state_dict(state)
    assert old.supervised_joints.all()
    # ... and a partial load (e.g. backbone weights) leaves the model's own value alone.
    fresh.load_state_dict({k: v for k, v in state.items() if k.startswith("backbone.")}, strict=False)
    assert fresh.supervised_joints[ears].tolist() == [False, False]
