"""Weights kept in one dtype, computed in another; the dtype's own rounding noise; peak memory.

Most checkpoints are stored in bfloat16, and upcasting a bfloat16 weight to float32 is exact. So a
model whose weights stay in bfloat16 and whose every unit (input embeddings, each decoder layer, the
final norm, the LM head) computes in float32 gives the numbers of a float32 load at half the weight
memory. Each unit's parameters are upcast when it is called and put back when it returns (a forward
pre-hook and an always-called forward hook), so at most one unit is held in float32 at a time, never
a full float32 copy. Buffers the model computes itself (rotary tables, Gemma's embedding scale) are
rebuilt in the compute dtype, as a load in that dtype would hold them.

The same upcast, switched on for a moment (`computing`), gives the start-up checks a float32 view of a
half-precision model: how far the model's own output moves between its dtype and float32 is the
rounding the checks must tolerate (`rounding_noise`); a structural mismatch stays far beyond it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from slr_core.models.architectures import decoder_layers, describe
from slr_core.models.building import BUILDING

# A check refuses only beyond this multiple of the dtype's measured rounding noise on the model:
# two half-precision paths each round about as much as the model's own forward does.
NOISE_MULTIPLE = 4.0

_LOCK = threading.RLock()
# id(parameter) -> [parameter, its stored data, how many running calls hold it upcast]. Keyed by the
# parameter, not the module: hybrids and partial restorations share parameters across module copies,
# and tied embeddings share one parameter between two units.
_HELD: dict[int, list] = {}
_LOCAL = threading.local()


def compute_dtype(model: nn.Module) -> torch.dtype:
    """The dtype `model` computes in: its split compute dtype, else its parameters' dtype."""
    return getattr(model, "_slr_compute_dtype", None) or next(model.parameters()).dtype


def weights_dtype(model: nn.Module) -> torch.dtype:
    """The dtype `model` keeps its weights in."""
    return getattr(model, "_slr_weights_dtype", None) or next(model.parameters()).dtype


def unit_dtype(unit: nn.Module) -> torch.dtype | None:
    """The compute dtype of a split model's unit (a decoder layer); None when not split."""
    return getattr(unit, "_slr_compute_dtype", None)


def is_split(model: nn.Module) -> bool:
    """Whether `model` keeps its weights in a narrower dtype than it computes in."""
    return compute_dtype(model) != weights_dtype(model)


def _acquire(params: list[nn.Parameter], dtype: torch.dtype) -> None:
    with _LOCK:
        for parameter in params:
            entry = _HELD.get(id(parameter))
            if entry is None:
                if parameter.dtype == dtype or not parameter.is_floating_point():
                    continue  # e.g. a blended tensor already materialised in the compute dtype
                entry = _HELD[id(parameter)] = [parameter, parameter.data, 0]
                # A plain tensor even inside inference mode, so later no_grad code may use it.
                with torch.inference_mode(False), torch.no_grad():
                    parameter.data = parameter.data.to(dtype)
            entry[2] += 1


def _release(params: list[nn.Parameter]) -> None:
    with _LOCK:
        for parameter in params:
            entry = _HELD.get(id(parameter))
            if entry is None:
                continue
            entry[2] -= 1
            if entry[2] == 0:
                parameter.data = entry[1]
                del _HELD[id(parameter)]


def _unique_parameters(module: nn.Module) -> list[nn.Parameter]:
    return list({id(p): p for p in module.parameters()}.values())


def _stack(module: nn.Module) -> list:
    # Per thread and per module object: a call's pre- and post-hook run on one thread.
    stacks = _LOCAL.__dict__.setdefault("stacks", {})
    return stacks.setdefault(id(module), [])


def _hook(module: nn.Module, dtype: torch.dtype) -> list:
    # Called as a unit of a hybrid or a shallow copy too (copies share the hook table): the hook
    # upcasts the parameters of the module it is called on, which is what that call uses.
    def before(called, _args):
        params = _unique_parameters(called)
        _stack(called).append(params)
        _acquire(params, dtype)

    def after(called, _args, _output):
        stack = _stack(called)
        if stack:  # empty when an earlier pre-hook raised before ours ran
            _release(stack.pop())

    return [
        module.register_forward_pre_hook(before, prepend=True),
        module.register_forward_hook(after, always_call=True),
    ]


def units(model: nn.Module) -> list[nn.Module]:
    """The modules that compute in turn: input embeddings, each decoder layer, final norm, LM head."""
    arch = describe(model)
    found = [model.get_input_embeddings(), *decoder_layers(model), model.get_submodule(arch.norm)]
    found.append(model.get_output_embeddings())
    return list({id(m): m for m in found}.values())


def _rebuild_buffers(model: nn.Module, dtype: torch.dtype) -> None:
    """Floating buffers in `dtype`: the model's own computed ones as built in `dtype`, loaded ones upcast."""
    from accelerate import init_empty_weights

    with BUILDING, init_empty_weights(include_buffers=False):  # parameters on meta: only buffers are built
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            skeleton = type(model)(model.config)
        finally:
            torch.set_default_dtype(previous)
    built = dict(skeleton.named_buffers())
    for name, buffer in list(model.named_buffers()):
        if not buffer.is_floating_point():
            continue
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        fresh = built.get(name)
        computed = leaf in owner._non_persistent_buffers_set
        if computed and fresh is not None and fresh.device.type != "meta" and fresh.shape == buffer.shape:
            owner._buffers[leaf] = fresh.to(device=buffer.device, dtype=dtype)
        else:
            owner._buffers[leaf] = buffer.to(dtype)


def split(model: nn.Module, weights: torch.dtype, compute: torch.dtype) -> nn.Module:
    """Keep `model`'s weights in `weights` and compute every unit in `compute`; returns the model."""
    if weights == compute:
        return model
    if weights.itemsize > compute.itemsize:
        raise ValueError(f"weights in {weights} are wider than the compute dtype {compute}")
    for parameter in model.parameters():
        if parameter.is_floating_point() and parameter.dtype != weights:
            parameter.data = parameter.data.to(weights)
    _rebuild_buffers(model, compute)
    for unit in units(model):
        _hook(unit, compute)
        unit._slr_compute_dtype = compute  # e.g. a lambda blend of a layer is kept in it
    model._slr_compute_dtype, model._slr_weights_dtype = compute, weights
    return model


@contextmanager
def computing(model: nn.Module, dtype: torch.dtype = torch.float32) -> Iterator[None]:
    """While active, `model` computes in `dtype` (its weights upcast per unit and call).

    The upcast swaps the shared parameters' data, so a half-precision call of the same model in
    another thread meanwhile would meet float32 weights: the start-up checks use it for one short
    reference pass, before the sweep's own work.
    """
    if compute_dtype(model) == dtype:
        yield
        return
    handles = [handle for unit in units(model) for handle in _hook(unit, dtype)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def held(modules: list[nn.Module], dtype: torch.dtype) -> Iterator[None]:
    """Keep these modules upcast for the whole block (e.g. the LM head over a sweep's many head calls)."""
    params = [p for module in modules for p in _unique_parameters(module)]
    _acquire(params, dtype)
    try:
        yield
    finally:
        _release(params)


@contextmanager
def head_held(model: nn.Module) -> Iterator[None]:
    """For a split model, keep the final norm and LM head upcast over a block of many head calls."""
    if not is_split(model):
        yield
        return
    with held(
        [model.get_submodule(describe(model).norm), model.get_output_embeddings()], compute_dtype(model)
    ):
        yield


@torch.inference_mode()
def rounding_noise(model: nn.Module, run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    """`run()` as the model computes it, and how far it moves in float32 compute (0.0 in float32).

    That distance is this dtype's own rounding on this model and input: what two ways of computing
    the same thing in this dtype may differ by, where a structural mismatch differs far more.
    """
    result = run()
    if compute_dtype(model) == torch.float32:
        return result, 0.0
    with computing(model, torch.float32):
        exact = run()
    gap = (result.float() - exact.float().to(result.device)).abs()
    return result, float(gap.max()) if gap.numel() else 0.0


def tolerance(base: float, noise: float) -> float:
    """The allowed gap: the float32 tolerance, plus NOISE_MULTIPLE x the measured rounding noise."""
    return base + NOISE_MULTIPLE * noise


def explain(gap: float, base: float, noise: float, dtype: torch.dtype) -> str:
    """Why a gap is refused, saying whether rounding could explain it."""
    name = str(dtype).replace("torch.", "")
    if noise == 0.0:
        return f"{gap:.2e}, beyond the float32 tolerance {base:g}: a structural mismatch, not rounding"
    return (
        f"{gap:.2e}, {gap / noise:.1f}x {name}'s own rounding noise on this model ({noise:.2e}; allowed "
        f"{tolerance(base, noise):.2e}): a structural mismatch, not rounding"
    )


def peak_memory() -> dict[str, int]:
    """Peak memory of this process so far: resident set (bytes) and, where CUDA is used, GPU bytes."""
    peak = {"rss_bytes": _resident("VmHWM")}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["cuda_bytes"] = torch.cuda.max_memory_allocated()
    return peak


def resident_now() -> int:
    """This process's resident set now, in bytes."""
    return _resident("VmRSS")


def _resident(field: str) -> int:
    # Linux: /proc/self/status, whose VmHWM starts afresh at exec (getrusage's ru_maxrss carries the
    # parent's peak across fork and exec, so a child started by a big process would report that).
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    import resource  # Unix only; macOS reports bytes, Linux KiB
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def describe_peak(peak: dict[str, int] | None = None) -> str:
    """'peak memory: resident 1.23 GiB, GPU 4.56 GiB' for summaries."""
    peak = peak or peak_memory()
    text = f"peak memory: resident {peak['rss_bytes'] / 2**30:.2f} GiB"
    if "cuda_bytes" in peak:
        text += f", GPU {peak['cuda_bytes'] / 2**30:.2f} GiB"
    return text
