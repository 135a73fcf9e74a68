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


@dataclass(frozen=True)
class Settings:
    """How to load and run models; the one validator that resolves device and dtype."""

    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    device_map: str | dict | None = None

    def __post_init__(self) -> None:
        # torch is imported here, not at the top, so the CLI can list DEVICES and DTYPES without loading it.
        import torch

        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise SourceError(f"Unknown device '{self.device}': use auto, cpu, cuda, cuda:N or mps.")
        if self.dtype not in DTYPES:
            raise SourceError(f"Unknown dtype '{self.dtype}': use {', '.join(DTYPES)}.")
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
        """auto: bfloat16 on a GPU, float32 on the CPU."""
        import torch

        if self.dtype == "auto":
            return torch.float32 if self.torch_device.type == "cpu" else torch.bfloat16
        return getattr(torch, self.dtype)
