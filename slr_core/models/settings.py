"""How models are loaded and run: the one place that resolves device and dtype, and the q-fraction default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slr_core.errors import SourceError

if TYPE_CHECKING:
    import torch

# The choices the CLI, the app and Settings all offer; "cuda:N" is accepted too.
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# q_min = DEFAULT_Q_FRACTION x Q_CRC(post): the quality kept when choosing an interval or a soup alpha.
DEFAULT_Q_FRACTION = 0.9
# On CUDA, auto computes in float32 when, with both models' weights in place, the free memory still
# holds the largest unit's float32 copy plus this much for activations; else in bfloat16.
ACTIVATION_RESERVE = 4 << 30


@dataclass(frozen=True)
class Settings:
    """How to load and run models; the one validator that resolves device and dtype."""

    device: str = "auto"
    dtype: str = "auto"
    weights_dtype: str = "auto"
    trust_remote_code: bool = False
    device_map: str | dict | None = None

    def __post_init__(self) -> None:
        # torch is imported here, not at the top, so the CLI can list DEVICES and DTYPES without loading it.
        import torch

        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise SourceError(f"Unknown device '{self.device}': use auto, cpu, cuda, cuda:N or mps.")
        if self.dtype not in DTYPES:
            raise SourceError(f"Unknown dtype '{self.dtype}': use {', '.join(DTYPES)}.")
        if self.weights_dtype not in DTYPES:
            raise SourceError(f"Unknown weights dtype '{self.weights_dtype}': use {', '.join(DTYPES)}.")
        if self.dtype != "auto" and self.weights_dtype != "auto":
            if getattr(torch, self.weights_dtype).itemsize > getattr(torch, self.dtype).itemsize:
                raise SourceError(
                    f"--weights-dtype {self.weights_dtype} is wider than --dtype {self.dtype}: weights are "
                    "upcast to the compute dtype, never rounded down per call. Use --weights-dtype "
                    f"{self.dtype} (or auto)."
                )
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise SourceError(
                "device 'cuda' was asked for, but PyTorch sees no CUDA GPU here: use auto or cpu."
            )
        if self.device == "mps" and not torch.backends.mps.is_available():
            raise SourceError(
                "device 'mps' was asked for, but PyTorch sees no Apple GPU here: use auto or cpu."
            )

    @property
    def torch_device(self) -> torch.device:
        """auto: cuda, then mps, then cpu."""
        import torch

        if self.device != "auto":
            return torch.device(self.device)
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    @property
    def torch_dtype(self) -> torch.dtype:
        """The compute dtype. auto: float32 on the CPU and on CUDA (where load_pair falls back to
        bfloat16 when float32 compute does not fit: auto_cuda_compute), bfloat16 on Apple GPUs."""
        import torch

        if self.dtype == "auto":
            return torch.bfloat16 if self.torch_device.type == "mps" else torch.float32
        return getattr(torch, self.dtype)

    @property
    def torch_weights_dtype(self) -> torch.dtype:
        """The dtype weights are kept in. auto: the compute dtype, except on CUDA: half precision
        (bfloat16; float16 under --dtype float16), half the memory, upcast exactly per call."""
        import torch

        if self.weights_dtype != "auto":
            return getattr(torch, self.weights_dtype)
        compute = self.torch_dtype
        if self.torch_device.type == "cuda" and compute.itemsize > 2:
            return torch.bfloat16
        return compute

    @property
    def auto_compute(self) -> bool:
        """Whether the compute dtype is left to what fits the CUDA device (auto_cuda_compute)."""
        return self.dtype == "auto" and self.torch_device.type == "cuda"


def auto_cuda_compute(free_bytes: int, largest_unit_params: int) -> torch.dtype:
    """--dtype auto on CUDA, once both models' weights are loaded: float32 compute (the float32
    numbers, measured 0.05 away from bfloat16 in stop rate on the demo) when the free memory still
    holds the largest unit upcast to float32 plus ACTIVATION_RESERVE; else bfloat16 compute."""
    import torch

    needed = 4 * largest_unit_params + ACTIVATION_RESERVE
    return torch.float32 if free_bytes >= needed else torch.bfloat16
