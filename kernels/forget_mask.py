"""Fused forget restriction over a batch of logits: forced token, bans and semantic penalty.

For each flagged row r (logits row `rows[r]`):
  * `forced[r] >= 0`: every logit but `forced[r]` becomes -inf and `forced[r]`'s becomes 0 (honest
    refusal, token by token; finite even where a client's `allowed_token_ids`, `bad_words` or
    bias made it -inf, or the row would be all -inf and sample any token);
  * otherwise: `logits[row, pen_ids[p]] -= strength[r] * pen_vals[p]` over the row's penalty
    slice, then `logits[row, ban_ids[b]] = -inf` over its ban slice.
Slices are CSR: row r owns `[pen_offsets[r], pen_offsets[r+1])` and the same for bans. A row's
penalty ids are unique (the caller merges targets), so no two lanes write one address.
Rows not listed are never read nor written.
"""

from __future__ import annotations

import os

import torch

try:  # Triton is optional: CPU installs may lack it, the twin covers them.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised on installs without triton
    triton = None

BLOCK = 1024
# No fused multiply-add: `cur - scale * val` rounds twice, as the twin does, so the kernel and
# the twin agree bit for bit in float32 too (with fusion, measured on an H200: float32 rows
# differed in the last bit; bfloat16 rows were equal either way).
LAUNCH_OPTIONS = {"enable_fp_fusion": False}


def forget_mask_torch(
    logits: torch.Tensor,
    rows: torch.Tensor,
    forced: torch.Tensor,
    strength: torch.Tensor,
    pen_ids: torch.Tensor,
    pen_vals: torch.Tensor,
    pen_offsets: torch.Tensor,
    ban_ids: torch.Tensor,
    ban_offsets: torch.Tensor,
) -> torch.Tensor:
    """Pure-torch twin of the Triton kernel, same signature; edits `logits` in place."""
    if rows.numel() == 0:
        return logits
    device = logits.device
    rows = rows.to(device)
    forced_mask = (forced >= 0).to(device)
    frows = rows[forced_mask]
    ftoks = forced.to(device)[forced_mask]
    pen_counts = (pen_offsets[1:] - pen_offsets[:-1]).to(device)
    pen_rows = torch.repeat_interleave(rows, pen_counts)
    pen_scale = torch.repeat_interleave(strength.to(device, torch.float32), pen_counts)
    delta = (pen_scale * pen_vals.to(device, torch.float32)).to(logits.dtype)
    logits.index_put_((pen_rows, pen_ids.to(device)), -delta, accumulate=True)
    ban_counts = (ban_offsets[1:] - ban_offsets[:-1]).to(device)
    logits[torch.repeat_interleave(rows, ban_counts), ban_ids.to(device)] = float("-inf")
    if frows.numel():
        logits[frows] = float("-inf")
        logits[frows, ftoks] = 0.0
    return logits


if triton is not None:

    @triton.jit
    def _forget_mask_kernel(
        logits_ptr,
        stride_row,
        vocab,
        rows_ptr,
        forced_ptr,
        strength_ptr,
        pen_ids_ptr,
        pen_vals_ptr,
        pen_off_ptr,
        ban_ids_ptr,
        ban_off_ptr,
        BLOCK_SIZE: tl.constexpr,
    ):
        r = tl.program_id(0)
        row = tl.load(rows_ptr + r).to(tl.int64)
        base = logits_ptr + row * stride_row
        forced = tl.load(forced_ptr + r)
        # Triton wants a name bound in both branches to have one type in both: the forced
        # branch walks int32 columns, the other int64 CSR offsets, so no name is shared.
        if forced >= 0:
            for f0 in range(0, vocab, BLOCK_SIZE):
                fcols = f0 + tl.arange(0, BLOCK_SIZE)
                fill = tl.full((BLOCK_SIZE,), float("-inf"), logits_ptr.dtype.element_ty)
                tl.store(base + fcols, fill, mask=fcols < vocab)
            tl.store(base + forced, 0.0)
        else:
            scale = tl.load(strength_ptr + r)
            p0 = tl.load(pen_off_ptr + r)
            p1 = tl.load(pen_off_ptr + r + 1)
            for start in range(p0, p1, BLOCK_SIZE):
                idx = start + tl.arange(0, BLOCK_SIZE)
                live = idx < p1
                cols = tl.load(pen_ids_ptr + idx, mask=live, other=0)
                vals = tl.load(pen_vals_ptr + idx, mask=live, other=0.0)
                cur = tl.load(base + cols, mask=live, other=0.0)
                new = cur - (scale * vals).to(cur.dtype)
                tl.store(base + cols, new, mask=live)
            b0 = tl.load(ban_off_ptr + r)
            b1 = tl.load(ban_off_ptr + r + 1)
            for bstart in range(b0, b1, BLOCK_SIZE):
                bidx = bstart + tl.arange(0, BLOCK_SIZE)
                blive = bidx < b1
                bcols = tl.load(ban_ids_ptr + bidx, mask=blive, other=0)
                ninf = tl.full((BLOCK_SIZE,), float("-inf"), logits_ptr.dtype.element_ty)
                tl.store(base + bcols, ninf, mask=blive)


def forget_mask_triton(
    logits: torch.Tensor,
    rows: torch.Tensor,
    forced: torch.Tensor,
    strength: torch.Tensor,
    pen_ids: torch.Tensor,
    pen_vals: torch.Tensor,
    pen_offsets: torch.Tensor,
    ban_ids: torch.Tensor,
    ban_offsets: torch.Tensor,
) -> torch.Tensor:
    """The fused Triton kernel: one program per flagged row. Edits `logits` in place."""
    if triton is None:
        raise RuntimeError("triton is not installed")
    if rows.numel() == 0:
        return logits
    assert logits.stride(1) == 1, "logits rows must be contiguous"
    _forget_mask_kernel[(rows.numel(),)](
        logits,
        logits.stride(0),
        logits.shape[1],
        rows,
        forced,
        strength,
        pen_ids,
        pen_vals,
        pen_offsets,
        ban_ids,
        ban_offsets,
        BLOCK_SIZE=BLOCK,
        **LAUNCH_OPTIONS,
    )
    return logits


def use_triton(device: torch.device) -> bool:
    """The kernel on CUDA, the twin elsewhere (`GUARD_FORCE_TWIN=1` forces the twin)."""
    if os.environ.get("GUARD_FORCE_TWIN") == "1" or triton is None:
        return False
    return torch.device(device).type == "cuda"


def forget_mask(logits: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
    """Dispatch: Triton kernel on CUDA, torch twin on CPU. Same arguments as the twin."""
    fn = forget_mask_triton if use_triton(logits.device) else forget_mask_torch
    return fn(logits, *args)
