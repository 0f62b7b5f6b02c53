"""What the Triton kernels share: the accumulation type and the block size."""
import torch
import triton
import triton.language as tl


def _acc_torch(dtype: torch.dtype) -> torch.dtype:
    """Accumulation type: float64 for double inputs, float32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _acc(dtype: torch.dtype):
    return tl.float64 if _acc_torch(dtype) == torch.float64 else tl.float32


def _block(n: int, lo: int = 16, hi: int = 256) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))
