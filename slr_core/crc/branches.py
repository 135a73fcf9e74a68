"""One batched pass that scores a prompt's first token and everything along its answer trie.

Strict CRC needs p(end | prompt, s) for every sequence s that says an answer, and answers of several
tokens need p(s_k | prompt, s_<k). Instead of one forward per sequence, each prompt row holds the
prompt followed by its answer trie's nodes (crc/trie.py) as *branches*, as in tree decoding: a node
of depth d sits at position L + d - 1 (L the prompt length) and attends to the prompt, its ancestors
and itself only. The model itself builds the masks and rotary tables for the plain left-to-right
layout; `tree_arguments` then rewrites only the node rows of those recorded arguments:

- a node's mask row is the mask row of position L + d - 1 (same window over the prompt), with the
  column of its ancestor at depth m read from column L + m - 1 and every other node's column from
  the spare padding column, which no row attends to;
- its position ids and rotary tables are those of position L + d - 1.

Single-token answers make a trie of depth 1: every branch at position L, seeing itself only.

Prompt positions are untouched (causal attention never looks right), so Q and D are unchanged.
Any other positional argument is refused loudly rather than replayed wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slr_core.crc.prompts import EncodedPrompts
from slr_core.errors import UnsupportedArchitectureError

MASK_NAME = "attention_mask"
POSITION_NAMES = ("position_ids", "cache_position")


@dataclass
class Batch:
    """Right-padded rows: prompt, then its branches; right padding keeps every query row attending."""

    input_ids: torch.Tensor  # [P, W]
    attention_mask: torch.Tensor  # [P, W]
    last_index: torch.Tensor  # [P] position of each prompt's last token
    widths: torch.Tensor  # [P] real tokens per row (prompt + branches)
    keep_index: torch.Tensor  # [P, 1 + K] last prompt position, then each branch's position
    source: torch.Tensor  # [P, W] the position whose place each position takes (L + d - 1 for nodes)
    # [P, W, depth]: for the node at each position, the positions of its ancestors at depths 1..d
    # (itself last); -1 elsewhere and beyond its depth.
    ancestors: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return self.input_ids.shape[1]

    @property
    def num_kept(self) -> int:
        return self.keep_index.shape[1]


def make_batch(
    encoded: EncodedPrompts, pad_token_id: int | None, device: torch.device, branches: bool = True
) -> Batch:
    """Stack each prompt with its answer trie's nodes as branches (none without `branches`: Q and D only).

    Tries deeper than one token are laid out even without `branches`: Q itself needs their heads.
    """
    pad = pad_token_id if pad_token_id is not None else 0
    tries = [trie if branches or not trie.is_flat else None for trie in encoded.tries]
    answers = [trie.tokens if trie is not None else [] for trie in tries]
    rows = [ids + answers[p] for p, ids in enumerate(encoded.input_ids)]
    num_rows, kept = len(rows), 1 + max(len(t) for t in answers)
    depth = max([1, *(max(trie.depth, default=1) for trie in tries if trie is not None)])
    # One spare padding column: the model then always builds an explicit mask we can rewrite, and
    # node rows read every non-ancestor node's column from it.
    width = max(len(r) for r in rows) + 1
    input_ids = torch.full((num_rows, width), pad, dtype=torch.long)
    attention_mask = torch.zeros((num_rows, width), dtype=torch.long)
    source = torch.arange(width).repeat(num_rows, 1)
    ancestors = torch.full((num_rows, width, depth), -1, dtype=torch.long)
    last_index = torch.tensor([len(ids) - 1 for ids in encoded.input_ids])
    keep_index = last_index[:, None].repeat(1, kept)
    for p, row in enumerate(rows):
        length = len(encoded.input_ids[p])
        input_ids[p, : len(row)] = torch.tensor(row)
        attention_mask[p, : len(row)] = 1
        keep_index[p, 1 : 1 + len(row) - length] = torch.arange(length, len(row))
        trie = tries[p]
        for node, parent in enumerate(trie.parent if trie is not None else ()):
            chain = ancestors[p, length + parent] if parent >= 0 else torch.full((depth,), -1)
            level = int((chain >= 0).sum())  # the parent's depth
            ancestors[p, length + node] = chain
            ancestors[p, length + node, level] = length + node
            source[p, length + node] = length + level
    widths = attention_mask.sum(dim=1)
    tensors = (input_ids, attention_mask, last_index, widths, keep_index, source, ancestors)
    return Batch(*(t.to(device) for t in tensors))


def tree_arguments(kwargs: dict, batch: Batch, memo: dict[tuple[str, int], tuple]) -> dict:
    """Rewrite one layer's recorded keyword arguments from the left-to-right layout to the tree.

    `memo` maps (name, id(original)) to its rewrite, so layers sharing one mask share one rewritten mask.
    """
    out = {}
    for name, value in kwargs.items():
        key = (name, id(value))
        if key not in memo:
            memo[key] = (value, _rewrite(name, value, batch))  # holding `value` keeps its id unique
        out[name] = memo[key][1]
    return out


def _rewrite(name: str, value, batch: Batch):
    if name == MASK_NAME:
        return _tree_mask(value, batch)
    if name in POSITION_NAMES or name.startswith("position_embeddings"):
        return _at_sources(value, batch, name)
    _refuse_positional(name, value, batch)
    return value


def _tree_mask(mask, batch: Batch) -> torch.Tensor:
    width = batch.num_tokens
    if not isinstance(mask, torch.Tensor) or mask.dim() != 4 or mask.shape[-2:] != (width, width):
        raise UnsupportedArchitectureError(
            "Strict CRC places answer tokens as branches and needs an explicit [batch, heads, query, "
            f"key] attention mask, but this model's layers received {_describe(mask)}. Load the "
            "model with attn_implementation='sdpa' or 'eager'."
        )
    rows = mask.shape[0] if mask.shape[0] > 1 else len(batch.source)
    mask = mask.expand(rows, *mask.shape[1:])
    heads, out = mask.shape[1], []
    for p in range(rows):  # one row at a time: the column map is [W, W]
        columns = _columns(batch, p, width).to(mask.device)
        source = batch.source[p].to(mask.device)
        gathered = mask[p].gather(1, source[None, :, None].expand(heads, width, width))
        out.append(gathered.gather(2, columns[None].expand(heads, width, width)))
    return torch.stack(out)


def _columns(batch: Batch, p: int, width: int) -> torch.Tensor:
    # Key column k of query q reads column columns[q, k] of q's source row: the prompt as itself,
    # the ancestor at depth m from L + m - 1, every other node from the spare padding column.
    columns = torch.arange(width).repeat(width, 1)
    ancestors = batch.ancestors[p].cpu()
    nodes = (ancestors >= 0).any(dim=1).nonzero().flatten()
    if len(nodes) == 0:
        return columns
    prompt_end = int(batch.last_index[p]) + 1  # L
    columns[nodes, prompt_end:] = width - 1
    q_idx, m_idx = (ancestors[nodes] >= 0).nonzero(as_tuple=True)
    columns[nodes[q_idx], ancestors[nodes[q_idx], m_idx]] = prompt_end + m_idx
    return columns


def _at_sources(value, batch: Batch, name: str):
    if isinstance(value, tuple | list):
        return type(value)(_at_sources(v, batch, name) for v in value)
    if value is None:
        return None
    width = batch.num_tokens
    if not isinstance(value, torch.Tensor):
        raise UnsupportedArchitectureError(
            f"Strict CRC cannot place branches in '{name}' ({_describe(value)})."
        )
    if value.dim() == 1:  # cache_position: one row for the whole batch; unused without a cache
        return value
    if value.shape[1] != width:
        raise UnsupportedArchitectureError(
            f"Strict CRC expected '{name}' to have the sequence on dimension 1, got {_describe(value)}."
        )
    rows = value.shape[0] if value.shape[0] > 1 else len(batch.source)
    value = value.expand(rows, *value.shape[1:])
    index = batch.source.to(value.device).view(rows, width, *([1] * (value.dim() - 2)))
    return value.gather(1, index.expand(rows, width, *value.shape[2:]))


def _refuse_positional(name: str, value, batch: Batch) -> None:
    # An unknown tensor laid out along the sequence would be replayed at the wrong positions.
    tensors = value if isinstance(value, tuple | list) else (value,)
    for tensor in tensors:
        if isinstance(tensor, torch.Tensor) and tensor.dim() >= 2 and tensor.shape[1] == batch.num_tokens:
            raise UnsupportedArchitectureError(
                f"Decoder layers receive '{name}' ({_describe(tensor)}), a per-position argument the "
                "strict-CRC branch layout does not know how to place; this model is not supported."
            )


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def cut_to_width(name: str, value, width: int):
    """Keep the first `width` positions of a tree argument (rows longer than needed are padding)."""
    if isinstance(value, tuple | list):
        return type(value)(cut_to_width(name, v, width) for v in value)
    if not isinstance(value, torch.Tensor) or value.dim() < 2:
        return value
    if name == MASK_NAME:
        return value[:, :, :width, :width]
    if name in POSITION_NAMES or name.startswith("position_embeddings"):
        return value[:, :width]
    return value
