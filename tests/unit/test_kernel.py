"""The fused Triton kernel against its torch twin (Triton's interpreter where there is no GPU)."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

import kernels.forget_mask as fm


@pytest.fixture(scope="module")
def triton_impl():
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        yield fm.forget_mask_triton, "cuda"
        return
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"  # read when @triton.jit runs, i.e. at module import
    try:
        module = importlib.reload(fm)
        yield module.forget_mask_triton, "cpu"
    finally:
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old
        importlib.reload(fm)


def make_case(batch: int, vocab: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, vocab, generator=g).to(dtype)
    flagged = torch.randperm(batch, generator=g)[: max(1, batch // 2)].sort().values
    n = flagged.numel()
    forced = torch.full((n,), -1, dtype=torch.int64)
    forced[::3] = torch.randint(0, vocab, (len(range(0, n, 3)),), generator=g)
    hit = forced >= 0
    logits[flagged[hit][::2], forced[hit][::2]] = float("-inf")  # a client's ban of the token
    strength = torch.rand(n, generator=g) * 5
    pen_ids, pen_vals, pen_off, ban_ids, ban_off = [], [], [0], [], [0]
    for _ in range(n):
        k = int(torch.randint(0, min(vocab, 300) + 1, (1,), generator=g))
        pen_ids.append(torch.randperm(vocab, generator=g)[:k])  # unique per row
        pen_vals.append(torch.rand(k, generator=g))
        pen_off.append(pen_off[-1] + k)
        b = int(torch.randint(0, min(vocab, 40) + 1, (1,), generator=g))
        ban_ids.append(torch.randint(0, vocab, (b,), generator=g))  # duplicates allowed
        ban_off.append(ban_off[-1] + b)
    return (
        logits,
        flagged.to(torch.int64),
        forced,
        strength.to(torch.float32),
        torch.cat(pen_ids).to(torch.int64),
        torch.cat(pen_vals).to(torch.float32),
        torch.tensor(pen_off, dtype=torch.int64),
        torch.cat(ban_ids).to(torch.int64),
        torch.tensor(ban_off, dtype=torch.int64),
    )


@pytest.mark.parametrize("vocab", [17, 1019, 49152, 151936])
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_kernel_matches_twin(triton_impl, vocab, batch):
    kernel, device = triton_impl
    logits, *args = make_case(batch, vocab, seed=vocab + batch)
    expected = fm.forget_mask_torch(logits.clone(), *args)
    got = kernel(logits.clone().to(device), *(a.to(device) for a in args)).cpu()
    torch.testing.assert_close(got, expected)


def test_twin_semantics_by_hand():
    logits = torch.zeros(4, 6)
    out = fm.forget_mask_torch(
        logits,
        torch.tensor([1, 3]),  # rows 0 and 2 are not flagged
        torch.tensor([-1, 4]),  # row 3 is forced to token 4
        torch.tensor([2.0, 9.0]),
        torch.tensor([0, 5, 1]),  # row 1: tokens 0 and 5 penalised; row 3: token 1
        torch.tensor([0.5, 1.0, 1.0]),
        torch.tensor([0, 2, 3]),
        torch.tensor([2, 2, 0]),  # row 1 bans token 2 (twice); row 3 bans token 0
        torch.tensor([0, 2, 3]),
    )
    ninf = float("-inf")
    assert out[0].tolist() == [0.0] * 6 and out[2].tolist() == [0.0] * 6
    assert out[1].tolist() == [-1.0, 0.0, ninf, 0.0, 0.0, -2.0]
    assert out[3].tolist() == [ninf, ninf, ninf, ninf, 0.0, ninf]


def test_a_forced_token_is_written_even_where_the_client_banned_it():
    """A client's `allowed_token_ids` or `bad_words` ran first and made the refusal's token
    -inf: the row must still write it, not sample from a row of -inf (any token)."""
    logits = torch.randn(2, 9, dtype=torch.bfloat16)
    logits[1, 4] = float("-inf")
    empty = torch.tensor([], dtype=torch.int64)
    out = fm.forget_mask_torch(
        logits,
        torch.tensor([1]),
        torch.tensor([4]),
        torch.tensor([1.0]),
        empty,
        torch.tensor([]),
        torch.tensor([0, 0]),
        empty,
        torch.tensor([0, 0]),
    )
    assert out[1].argmax().item() == 4 and torch.isfinite(out[1, 4])
    assert torch.softmax(out[1].float(), 0)[4].item() == 1.0


def test_dispatch_picks_twin_on_cpu():
    assert not fm.use_triton(torch.device("cpu"))
