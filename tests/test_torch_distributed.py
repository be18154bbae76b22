"""fastloss.torch across processes: DistributedDataParallel, and pickling the modules."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import fastloss

torch = pytest.importorskip("torch")

import fastloss.torch as flt  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "torch_ddp.py"


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_ddp_training_gives_torchs_weights():
    if not EXAMPLE.exists():
        pytest.skip("examples/ is not beside the tests (an installed wheel)")
    # The example spawns its workers; they import the fastloss under test.
    root = str(Path(fastloss.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "12", "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["grad_fn"]["fastloss"] == "_FusedLossBackward"
    assert summary["grad_fn"]["torch"] != "_FusedLossBackward"
    assert summary["max_difference"] <= 1e-6
    assert summary["final_loss"] < 0.5         # it learned: log(10) = 2.3 at the start


def _module_cases():
    weight = torch.rand(5, dtype=torch.float64) + 0.5
    return [
        (flt.CrossEntropyLoss(weight=weight, label_smoothing=0.1, ignore_index=2),
         torch.randint(0, 5, (8,))),
        (flt.BCEWithLogitsLoss(pos_weight=weight, reduction="sum"),
         torch.rand(8, 5, dtype=torch.float64)),
        (flt.MSELoss(reduction="none"), torch.randn(8, 5, dtype=torch.float64)),
        (flt.HuberLoss(delta=0.3), torch.randn(8, 5, dtype=torch.float64)),
        (flt.MultiMarginLoss(p=2, margin=0.5, weight=weight), torch.randint(0, 5, (8,))),
    ]


@pytest.mark.parametrize("case", range(5))
def test_modules_pickle(case, monkeypatch):
    # (the fused path at this small size: eager multi_margin_loss leaves calls
    # below _MULTI_MARGIN_TORCH_BELOW elements to torch)
    monkeypatch.setattr(flt, "_MULTI_MARGIN_TORCH_BELOW", 1)
    module, target = _module_cases()[case]
    copy = pickle.loads(pickle.dumps(module))
    assert type(copy) is type(module)
    assert copy.state_dict().keys() == module.state_dict().keys()
    for key, value in module.state_dict().items():
        assert torch.equal(copy.state_dict()[key], value)
    x = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    out, out_copy = module(x, target), copy(x, target)
    assert type(out_copy.grad_fn).__name__ == "_FusedLossBackward"
    assert torch.equal(out, out_copy)
