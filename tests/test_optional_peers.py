"""The package needs NumPy only: without a peer, what needs it says how to get it."""
import subprocess
import sys

BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"   # import torch then fails


def run(code):
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True,
                          text=True, timeout=120)


def test_fastloss_imports_and_computes_without_torch():
    done = run("import fastloss, numpy as np\n"
               "print(fastloss.mse(np.ones(3), np.zeros(3)).loss)\n"
               "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.0"


def test_fastloss_torch_without_torch_names_what_to_install():
    done = run("import fastloss.torch")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: fastloss.torch needs PyTorch"), last
    assert "pip install torch" in last and "fastloss[peers]" in last
