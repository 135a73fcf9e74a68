"""A model's decoder-layer calls, recorded once and replayed in the answer-branch layout.

A hooked forward pass records the arguments each decoder layer receives (masks, rotary tables,
per-layer sliding windows); `branches.tree_arguments` rewrites them for the branch layout, and the
sweep calls layers with them, so no architecture's forward is rewritten. The checks here fail loudly,
before any sweep work, wherever the replay would not equal the model's own computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slr_core.crc.branches import Batch, cut_to_width, tree_arguments
from slr_core.errors import UnsupportedArchitectureError
from slr_core.models import precision
from slr_core.models.architectures import decoder_layers, head_logits


@dataclass
class Capture:
    """Each decoder layer's input hidden states and call arguments, in the branch (tree) layout."""

    hidden_states: list[torch.Tensor]  # input of layer k for k < N; [N] is the last layer's output
    args: list[tuple]
    kwargs: list[dict]
    num_prompts: int
    first_call: tuple = ()  # layer 0's arguments as the model passed them (before the tree rewrite)
    # How far the last layer's output moves between the model's dtype and float32 compute (0.0 in
    # float32): the rounding the checks on hidden states allow for (precision.tolerance).
    noise: float = 0.0


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _rows(name: str, value, prompt_rows: torch.Tensor, num_prompts: int, width: int):
    # Batch-shaped tensors follow the rows and are cut to the chunk's width; broadcastable ones stay.
    if isinstance(value, torch.Tensor):
        if value.dim() >= 2 and value.shape[0] == num_prompts:
            value = value.index_select(0, prompt_rows.to(value.device))
        return cut_to_width(name, value, width)
    if isinstance(value, tuple | list):
        return type(value)(_rows(name, v, prompt_rows, num_prompts, width) for v in value)
    return value


@torch.inference_mode()
def capture(model: nn.Module, batch: Batch) -> Capture:
    """Record each decoder layer's call, rewrite it for the branch layout, and replay the model."""
    layers = decoder_layers(model)
    inputs, outputs = _record(model, layers, batch)
    noise = _hidden_noise(model, layers, batch, outputs[-1])
    for k in range(len(layers) - 1):
        if not torch.equal(outputs[k], inputs[k + 1][0]):
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} changes hidden states between decoder layers {k} and "
                f"{k + 1}; the shared-work sweep cannot replay it."
            )
    memo: dict[tuple[str, int], tuple] = {}  # layers of one kind share one mask: rewrite it once
    kwargs = [tree_arguments(entry[2], batch, memo) for entry in inputs]
    args = [entry[1] for entry in inputs]
    if not _has_branches(batch):  # the tree layout is then the plain one: the recording is the replay
        hidden = [entry[0] for entry in inputs] + outputs[-1:]
        return Capture(hidden, args, kwargs, len(batch.last_index), inputs[0][1:], noise)
    hidden = [inputs[0][0]]
    for k, layer in enumerate(layers):
        hidden.append(_first(layer(hidden[-1], *args[k], **kwargs[k])))
    _check_prompt_unchanged(model, hidden[-1], outputs[-1], batch, noise)
    return Capture(hidden, args, kwargs, len(batch.last_index), inputs[0][1:], noise)


def _hidden_noise(model: nn.Module, layers, batch: Batch, last: torch.Tensor) -> float:
    # The same recording pass in float32 compute: its distance is this dtype's rounding on this model.
    if precision.compute_dtype(model) == torch.float32:
        return 0.0
    with precision.computing(model, torch.float32):
        exact = _record(model, layers, batch)[1][-1]
    real = batch.attention_mask.bool().to(last.device)
    return float((last.float() - exact.to(last.device).float())[real].abs().max())


def _has_branches(batch: Batch) -> bool:
    positions = torch.arange(batch.num_tokens, device=batch.source.device)
    return bool((batch.source != positions).any())


class _Reached(Exception):
    """Ends a forward pass once the first decoder layer's input is known."""


@torch.inference_mode()
def replay(model: nn.Module, batch: Batch, reference: Capture) -> Capture | None:
    """`capture` for another model of the reference's architecture (the pre-trained one, a soup).

    Layer arguments (masks, position tables) follow from the inputs and the config, not the weights,
    so only the embeddings are run to reach layer 0, whose arguments must equal the reference's;
    then the layers replay the reference's branch-layout arguments. None if layer 0's arguments differ.
    """
    layers = decoder_layers(model)
    found: list = []

    def first(_module, args, kwargs):
        found.append(_call_parts(args, kwargs))
        raise _Reached

    handle = layers[0].register_forward_pre_hook(first, with_kwargs=True)
    try:
        _forward(model, batch)
    except _Reached:
        pass
    finally:
        handle.remove()
    if not found or not _same(found[0][1:], reference.first_call):
        return None
    hidden = [found[0][0]]
    for k, layer in enumerate(layers):
        hidden.append(_first(layer(hidden[-1], *reference.args[k], **reference.kwargs[k])))
    return Capture(
        hidden, reference.args, reference.kwargs, reference.num_prompts, reference.first_call, reference.noise
    )


def _same(a, b) -> bool:
    # Recorded arguments: tensors equal in shape and value, containers item by item, the rest by ==.
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        both = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
        return both and torch.equal(a, b.to(a.device))
    if isinstance(a, tuple | list):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a is b or (type(a) is type(b) and a == b)


def _call_parts(args: tuple, kwargs: dict) -> tuple:
    # A layer call as (hidden states, other positional arguments, keyword arguments).
    kwargs = dict(kwargs)
    hidden = args[0] if args else kwargs.pop("hidden_states")
    return hidden, tuple(args[1:]), kwargs


def _forward(model: nn.Module, batch: Batch):
    # logits_to_keep=1: the LM head over every position would dominate the pass (262k vocab).
    return model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False, logits_to_keep=1
    )


def _record(model: nn.Module, layers: nn.ModuleList, batch: Batch) -> tuple[list, list]:
    inputs: list = [None] * len(layers)
    outputs: list = [None] * len(layers)

    def before(layer_idx):
        def hook(_module, args, kwargs):
            inputs[layer_idx] = _call_parts(args, kwargs)

        return hook

    def after(layer_idx):
        def hook(_module, _args, _kwargs, output):
            outputs[layer_idx] = _first(output)

        return hook

    handles = [layer.register_forward_pre_hook(before(k), with_kwargs=True) for k, layer in enumerate(layers)]
    handles += [layer.register_forward_hook(after(k), with_kwargs=True) for k, layer in enumerate(layers)]
    try:
        _forward(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return inputs, outputs


def _check_prompt_unchanged(
    model: nn.Module, tree: torch.Tensor, plain: torch.Tensor, batch: Batch, noise: float
) -> None:
    # Causal attention never looks right, so branches must leave every prompt position as it was.
    positions = torch.arange(batch.num_tokens, device=batch.source.device)
    prompt = (batch.source == positions) & (positions <= batch.last_index[:, None])
    prompt = prompt.to(tree.device)
    ours, theirs = tree[prompt].float(), plain.to(tree.device)[prompt].float()
    if not torch.allclose(ours, theirs, atol=precision.tolerance(1e-3, noise), rtol=1e-3):
        gap = (ours - theirs).abs().max().item()
        raise UnsupportedArchitectureError(
            f"{type(model).__name__}: laying answer tokens out as branches changed the prompt's own "
            f"hidden states by {precision.explain(gap, 1e-3, noise, precision.compute_dtype(model))}; "
            "strict CRC cannot be computed for this model."
        )


def run_layer(layer: nn.Module, layer_idx: int, hidden_states, prompt_rows, cap: Capture):
    """Apply one decoder layer at position `layer_idx` to rows that answer prompts `prompt_rows`."""
    width = hidden_states.shape[1]
    kwargs = {
        name: _rows(name, value, prompt_rows, cap.num_prompts, width)
        for name, value in cap.kwargs[layer_idx].items()
    }
    args = _rows("", cap.args[layer_idx], prompt_rows, cap.num_prompts, width)
    return _first(layer(hidden_states, *args, **kwargs))


def last_logits(model: nn.Module, hidden_states: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
    """Final norm, LM head, logit scaling and soft-capping on each row's last real position: [B, T, d] -> [B, V]."""
    rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
    last = hidden_states[rows, last_index.to(hidden_states.device)]  # [B, d]
    return head_logits(model, last)


def final_logits(model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """Logits [R, V] of final hidden states [R, d]."""
    return last_logits(model, rows[:, None], torch.zeros(rows.shape[0], dtype=torch.long))


def kept_positions(hidden_states: torch.Tensor, keep_index: torch.Tensor) -> torch.Tensor:
    """[B, T, d] -> [B, K, d]: each row's last prompt position, then its branches."""
    index = keep_index.to(hidden_states.device)[:, :, None].expand(-1, -1, hidden_states.shape[-1])
    return hidden_states.gather(1, index)


@torch.inference_mode()
def check_tail(model: nn.Module, cap: Capture, batch: Batch) -> None:
    """Fail early if our norm+head disagrees with the model's own logits (e.g. an unknown head)."""
    length = int(batch.last_index[0]) + 1
    ids = batch.input_ids[:1, :length]
    expected, noise = precision.rounding_noise(
        model, lambda: model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1].float()
    )
    ours = last_logits(model, cap.hidden_states[-1][:1], batch.last_index[:1])[0]
    _compare_logits(model, ours, expected, noise, "replaying the final norm and LM head")


@torch.inference_mode()
def check_branches(model: nn.Module, cap: Capture, batch: Batch, count: int = 3) -> None:
    """Fail early if a trie node's logits differ from a plain forward of the prompt plus its path.

    Checks the first `count` nodes of the first row and, where the tries are deeper than one token,
    the deepest node and the last node of the row holding the deepest one (siblings, cousins, depth).
    """
    for row, position in _telling_nodes(batch, count):
        path = batch.ancestors[row, position]
        path = path[path >= 0]
        length = int(batch.last_index[row]) + 1
        ids = torch.cat([batch.input_ids[row, :length], batch.input_ids[row, path]])[None]
        expected, noise = precision.rounding_noise(
            model,
            lambda ids=ids: model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1].float(),
        )
        ours = final_logits(model, cap.hidden_states[-1][row, position][None])
        _compare_logits(model, ours, expected, noise, "scoring answer tokens as branches")


def _telling_nodes(batch: Batch, count: int) -> list[tuple[int, int]]:
    # (row, position) of the nodes check_branches runs plain forwards for.
    nodes = (batch.ancestors >= 0).any(dim=2)  # [P, W]
    first = nodes[0].nonzero().flatten()[:count].tolist()
    picks = [(0, position) for position in first]
    depth = (batch.ancestors >= 0).sum(dim=2)  # [P, W]
    if int(depth.max()) > 1:
        row = int(depth.max(dim=1).values.argmax())
        picks += [(row, int(depth[row].argmax())), (row, int(nodes[row].nonzero().flatten()[-1]))]
    return list(dict.fromkeys(picks))


def _compare_logits(model, ours: torch.Tensor, expected: torch.Tensor, noise: float, what: str) -> None:
    expected = expected.to(ours.device)  # across devices, the model returns logits where its input was
    # float32: 1e-3 as ever. Half precision rounds the two paths differently: the allowance grows by
    # a multiple of the model's own rounding on this input; a missing head transform is far larger.
    if not torch.allclose(ours, expected, atol=precision.tolerance(1e-3, noise), rtol=1e-3):
        gap = (ours - expected).abs().max().item()
        raise UnsupportedArchitectureError(
            f"{type(model).__name__}: {what} differs from the model's own logits by "
            f"{precision.explain(gap, 1e-3, noise, precision.compute_dtype(model))}; "
            "this architecture is not supported by the sweep."
        )


class Reference:
    """The post-trained model's capture on one batch, made on first use, for `model_scores` to replay."""

    def __init__(self, model: nn.Module, batch: Batch) -> None:
        self.model, self.batch, self._capture = model, batch, None

    def capture(self, stats=None) -> Capture:
        """The reference model's capture (recorded once; its work is added to `stats` when made)."""
        if self._capture is None:
            self._capture = capture(self.model, self.batch)
            if stats is not None:  # one recording pass, and a replay when there are branches
                passes = 2 if _has_branches(self.batch) else 1
                stats.token_layer_evals += passes * len(self._capture.args) * int(self.batch.widths.sum())
                stats.head_rows += len(self.batch.last_index)
        return self._capture
