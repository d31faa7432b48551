"""A cell runner for the resume tests: the library's ``train_cell``, killed (SIGKILL, by itself)
in the middle of saving the checkpoint of epoch ``$DECE_TEST_KILL_IN_SAVE``: after the weights,
optimizer and RNG states are written, before ``trainer_state.json``. Unset, it is ``train_cell``.

The point is deterministic without touching library code: the Trainer asks every
``ExportableState`` callback for its ``state()`` right before it writes ``trainer_state.json``
(``Trainer._save_checkpoint``), so :class:`KillInSave` dies there. Spawned ``dece run``
processes import this module by name (the tests put this directory on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from dece.experiments.runner import resumable, train_cell

KILL_ENV = "DECE_TEST_KILL_IN_SAVE"
SPEC = "resume_runner:train_cell_killed_in_save"


class KillInSave(TrainerCallback, ExportableState):
    """SIGKILLs this process while the checkpoint of epoch ``epoch`` is being saved."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self._armed = False

    def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self._armed = (state.epoch or 0) >= self.epoch - 1e-6

    def state(self) -> dict[str, Any]:
        if self._armed:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"args": {"epoch": self.epoch}, "attributes": {}}


@resumable
def train_cell_killed_in_save(cell_config: dict[str, Any], cell_dir: Path) -> dict[str, Any]:
    epoch = os.environ.get(KILL_ENV)
    return train_cell(cell_config, cell_dir, callbacks=[KillInSave(int(epoch))] if epoch else [])
