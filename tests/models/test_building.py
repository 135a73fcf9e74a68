"""Model builds in parallel threads never leave transformers' load-time patches in place."""

from __future__ import annotations

import threading

from transformers import PreTrainedModel

from slr_core.models import loading
from slr_core.models.settings import Settings
from slr_core.models.sources import parse_source

ORIGINAL_TIE_WEIGHTS = PreTrainedModel.tie_weights


def _load_in_threads(folder, threads: int = 4, rounds: int = 3) -> list[BaseException]:
    failures, start = [], threading.Barrier(threads)

    def work():
        start.wait()
        for _ in range(rounds):
            try:
                loading.load_model(parse_source(str(folder)), Settings(device="cpu"))
            except BaseException as error:  # noqa: BLE001 - collected and asserted on below
                failures.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return failures


def _tied_head_loads(folder) -> bool:
    model, _ = loading.load_model(parse_source(str(folder)), Settings(device="cpu"))
    head, embeddings = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    return head.device.type != "meta" and head.data_ptr() == embeddings.data_ptr()


def test_parallel_loads_leave_tying_intact(tiny_paths):
    _, post = tiny_paths("gemma3")  # tied embeddings: its head is only right if tie_weights ran
    assert _load_in_threads(post) == []
    assert PreTrainedModel.tie_weights is ORIGINAL_TIE_WEIGHTS
    assert _tied_head_loads(post)
