"""Write the bad checkpoints of the corpus (run from the repository root):

- ``garbage.pt``: random bytes;
- ``truncated.pt``: the first half of a real (tiny) AAM checkpoint;
- ``foreign.pt``: a valid PyTorch file that is not an AAM checkpoint (a bare state dict);
- ``pickle_exploit.pt``: a pickle that would run ``os.system`` on unpickling (it writes a
  file named ``aam_pickle_exploit_ran`` in the working directory): it must be refused.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from aam_core.checkpoint import checkpoint_from_model, save_checkpoint
from aam_core.model import AAMConfig, SequenceEncoder

HERE = Path(__file__).parent
MARKER = "aam_pickle_exploit_ran"


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"echo unsafe > {MARKER}",))


def main() -> None:
    rng = np.random.default_rng(0)
    (HERE / "garbage.pt").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    torch.manual_seed(0)
    model = SequenceEncoder(AAMConfig.tiny())
    real = HERE / "real_tiny.tmp"
    save_checkpoint(
        checkpoint_from_model(model, preprocessing={"max_bp": 150, "token_limit": 256}), real
    )
    data = real.read_bytes()
    real.unlink()
    (HERE / "truncated.pt").write_bytes(data[:20_000])  # of about 70 kB
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(3)}, buffer)
    (HERE / "foreign.pt").write_bytes(buffer.getvalue())
    buffer = io.BytesIO()
    torch.save({"format": "aam-checkpoint", "payload": Exploit()}, buffer)
    (HERE / "pickle_exploit.pt").write_bytes(buffer.getvalue())


if __name__ == "__main__":
    main()
