"""The fused kernel through Triton's real compiler, for Hopper, on a machine with no GPU.

A module of its own: test_kernel.py reloads the kernel module under Triton's interpreter.
"""

from __future__ import annotations

import pytest

import kernels.forget_mask as fm

SIGNATURE = {
    "logits_ptr": "*bf16",
    "stride_row": "i32",
    "vocab": "i32",
    "rows_ptr": "*i64",
    "forced_ptr": "*i64",
    "strength_ptr": "*fp32",
    "pen_ids_ptr": "*i64",
    "pen_vals_ptr": "*fp32",
    "pen_off_ptr": "*i64",
    "ban_ids_ptr": "*i64",
    "ban_off_ptr": "*i64",
    "BLOCK_SIZE": "constexpr",
}


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_kernel_compiles_for_hopper_without_fused_multiply_add(dtype):
    """The real compiler, not the interpreter: Triton's interpreter ran a kernel that the
    compiler rejects (one name bound to int32 in one branch and int64 in the other), which
    only an H200 showed. Compiling to sm_90 machine code needs no GPU."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(
        fn=fm._forget_mask_kernel,
        signature={**SIGNATURE, "logits_ptr": f"*{dtype}"},
        constexprs={"BLOCK_SIZE": fm.BLOCK},
    )
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=fm.LAUNCH_OPTIONS)
    assert compiled.asm["cubin"]
    assert "fma" not in compiled.asm["ptx"]
