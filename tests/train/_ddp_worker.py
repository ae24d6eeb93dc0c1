"""Run by test_ddp.py under torchrun: a few SGD steps of the Trainer in DDP with batch B per process; then
rank 0 alone trains the same model from the same start with batch W·B, and saves both results.

Usage: torchrun --nproc_per_node W _ddp_worker.py OUT.pth B
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from archc.compiler import CompileOptions, compile_spec  # noqa: E402
from archc.passes.equivalence import module_from_source  # noqa: E402
from archc.train.config import TrainOptions  # noqa: E402
from archc.train.data import TensorData  # noqa: E402
from archc.train.distributed import DistContext  # noqa: E402
from archc.train.loop import Trainer  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    out, batch = Path(sys.argv[1]), int(sys.argv[2])
    spec = Path(__file__).resolve().parent / "fixtures" / "small.yaml"
    src = compile_spec(spec, CompileOptions(params=["bn=false", "num_classes=3"])).source
    torch.manual_seed(0)
    model = module_from_source(src).create_model()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, 1, 8, 8, generator=g), torch.randint(0, 3, (48,), generator=g)
    data = TensorData("classification", x[:40], y[:40], x[40:], y[40:], 3)
    dist = DistContext.from_env(torch.device("cpu"))
    opts = TrainOptions(epochs=2, batch_size=batch, optimizer="sgd", lr=0.2, momentum=0.9, weight_decay=1e-3,
                        schedule="cosine", seed=4, device="cpu")
    trainer = Trainer(model, opts, dist=dist)
    metrics = trainer.fit(data)
    if dist.is_main:
        alone = module_from_source(src).create_model()
        alone.load_state_dict(init)
        ref = Trainer(alone, opts.replace(batch_size=batch * dist.world), dist=DistContext())
        ref_metrics = ref.fit(data)
        torch.save({"init": init, "ddp": trainer.model.state_dict(), "ddp_metrics": metrics, "world": dist.world,
                    "one": ref.model.state_dict(), "one_metrics": ref_metrics}, out)


if __name__ == "__main__":
    main()
