"""One lock for building models in this process.

transformers and accelerate patch classes while they build a model (`PreTrainedModel.tie_weights` replaced
by a no-op during `from_pretrained`, `nn.Module.register_parameter` during `init_empty_weights`) and put the
originals back on exit. Two threads building at once (the app's background load beside the embedder's
warm-up, two visitors' loads) can restore each other's patch and leave it in place for good: every later
tied model then loads with its head on the meta device. So every model build takes this lock.
"""

from __future__ import annotations

import threading

BUILDING = threading.RLock()  # re-entrant: a demo load builds its base, then merges adapters
