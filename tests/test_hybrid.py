"""Hybrids swap layer modules: no weight is copied, and the post-trained model stays intact."""

import copy

import pytest
import torch

from slr_core.errors import IntervalError
from slr_core.hybrid import build_hybrid, check_interval
from slr_core.models import Settings, decoder_layers, load_pair


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
    assert decoder_layers(tiny_pair.post)[1] is not decoder_layers(tiny_pair.pre)[1]


def test_hybrid_generates(tiny_pair):
    hybrid = build_hybrid(tiny_pair, 0, 1)
    ids = torch.tensor([[2, 5, 6, 7]])
    out = hybrid.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 7)


@pytest.mark.parametrize("start,end", [(-1, 2), (2, 1), (0, 4), (3, 9), (1.0, 2)])
def test_bad_intervals_are_refused(start, end):
    with pytest.raises(IntervalError, match="Interval"):
        check_interval(start, end, 4)
