"""Hybrids swap layer modules: no weight is copied, and the post-trained model stays intact."""

import copy

import pytest
import torch

from slr_core.errors import IntervalError
from slr_core.models.architectures import decoder_layers
from slr_core.models.loading import load_pair
from slr_core.models.settings import Settings
from slr_core.slr.hybrid import build_hybrid
from slr_core.slr.intervals import check_interval


def _weights_copied_hybrid(pair, start, end):
    # The obvious slow way, as a reference: copy the model and overwrite weights of layers i..j.
    reference = copy.deepcopy(pair.post)
    for k in range(start, end + 1):
        decoder_layers(reference)[k].load_state_dict(decoder_layers(pair.pre)[k].state_dict())
    return reference


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt_neox"])
def test_hybrid_equals_weight_copy_and_leaves_post_untouched(tiny_paths, family):
    pre, post = tiny_paths(family)
    pair = load_pair(str(pre), str(post), Settings(device="cpu"))
    before = {name: tensor.clone() for name, tensor in pair.post.state_dict().items()}
    ids = torch.tensor(
        [pair.tokenizer("Generate a random letter from A to K, please, now.")["input_ids"] * 3]
    )
    for start, end in [(0, 0), (1, 2), (0, pair.num_layers - 1)]:
        hybrid = build_hybrid(pair, start, end)
        expected = _weights_copied_hybrid(pair, start, end)(input_ids=ids).logits
        assert torch.equal(hybrid(input_ids=ids).logits, expected)
        assert all(decoder_layers(hybrid)[k] is decoder_layers(pair.pre)[k] for k in range(start, end + 1))
    for name, tensor in pair.post.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_hybrid_allocates_no_weights(tiny_pair):
    known = {p.data_ptr() for model in (tiny_pair.pre, tiny_pair.post) for p in model.parameters()}
    hybrid = build_hybrid(tiny_pair, 1, 2)
    assert {p.data_ptr() for p in hybrid.parameters()} <= known
    assert hybrid.get_input_embeddings() is tiny_pair.post.get_input_embeddings()
    assert hybrid.get_output_embeddings() is tiny_pair.post.get_output_embeddings()


def _every_interval(num_layers: int) -> list[tuple[int, int]]:
    return [(start, end) for start in range(num_layers) for end in range(start, num_layers)]


def test_hybrid_layers_are_the_pair_own_modules(tiny_pair):
    """Inside [i, j] each layer IS the pre-trained module, outside it IS the post-trained one."""
    pre, post = decoder_layers(tiny_pair.pre), decoder_layers(tiny_pair.post)
    last = tiny_pair.num_layers - 1
    intervals = _every_interval(tiny_pair.num_layers)
    assert {(0, 0), (last, last), (0, last), (1, last - 1)} <= set(intervals)  # edges included
    for start, end in intervals:
        layers = decoder_layers(build_hybrid(tiny_pair, start, end))
        assert len(layers) == tiny_pair.num_layers
        for k, layer in enumerate(layers):
            expected = pre[k] if start <= k <= end else post[k]
            assert layer is expected, (start, end, k)
    # Building hybrids leaves both models' own layer lists as they were.
    assert list(decoder_layers(tiny_pair.pre)) == list(pre)
    assert list(decoder_layers(tiny_pair.post)) == list(post)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_hybrid_generates_what_the_weight_copy_generates(tiny_paths, family):
    """Greedy generation through the KV cache gives the same tokens as the weight-copied model."""
    pre, post = tiny_paths(family)
    pair = load_pair(str(pre), str(post), Settings(device="cpu"))
    ids = torch.tensor([[2, 5, 6, 7, 9, 11]])
    options = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    post_tokens = pair.post.generate(input_ids=ids, **options)
    differs = []
    for start, end in [(0, 1), (pair.num_layers - 1, pair.num_layers - 1)]:
        generated = build_hybrid(pair, start, end).generate(input_ids=ids, **options)
        expected = _weights_copied_hybrid(pair, start, end).generate(input_ids=ids, **options)
        assert torch.equal(generated, expected), (start, end)
        assert torch.equal(generated[:, : ids.shape[1]], ids)
        differs.append(not torch.equal(generated, post_tokens))
    assert any(differs)  # the restored layers change what is generated, so the comparison has teeth


@pytest.mark.parametrize("start,end", [(-1, 2), (2, 1), (0, 4), (3, 9), (1.0, 2)])
def test_bad_intervals_are_refused(start, end):
    with pytest.raises(IntervalError, match="Interval"):
        check_interval(start, end, 4)
