"""The choice between the baseline and the x86-64-v3 build of the kernels."""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastloss
from fastloss import _config, _dispatch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastloss.__file__)))


def run_python(code, **env):
    """Run code in a fresh interpreter (the choice is made once, at import)."""
    environment = dict(os.environ, **env)
    environment["PYTHONPATH"] = ROOT + os.pathsep + environment.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, cwd=ROOT, check=True)
    return done.stdout


def test_show_config_reports_the_path_openmp_and_threads(capsys):
    config = fastloss.show_config()
    printed = capsys.readouterr().out
    assert config["kernels"] in (_dispatch.BASELINE, _dispatch.X86_64_V3)
    assert config["kernels"] == _dispatch.PATH
    assert f"kernels: {config['kernels']}" in printed
    assert config["default_n_threads"] >= 1
    if config["openmp"]:
        assert config["openmp_runtime"]


def test_the_v3_build_is_used_when_the_cpu_has_it():
    try:
        importlib.import_module("fastloss._elementwise_kernels_v3")
    except ImportError:
        pytest.skip("the x86-64-v3 build is not installed")
    forced = os.environ.get("FASTLOSS_FORCE_BASELINE", "") not in ("", "0")
    expected = (_dispatch.X86_64_V3 if _config.cpu_has_x86_64_v3() and not forced
                else _dispatch.BASELINE)
    assert _dispatch.PATH == expected


CODE = """
import json, numpy as np, fastloss, contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    config = fastloss.show_config()
rng = np.random.default_rng(0)
x = rng.standard_normal(1000).astype(np.float32) * 5
t = rng.random(1000).astype(np.float32)
logits = rng.standard_normal((50, 7))
labels = rng.integers(0, 7, 50)
bce = fastloss.binary_cross_entropy(x, t, reduction="none")
ce = fastloss.softmax_cross_entropy(logits, labels)
# the focal loss's float32 span (x86-64-v3) against the baseline's element loop:
# every gamma it covers, soft and hard targets, weighted rows, extreme logits
fx = np.concatenate([x, [0.0, -0.0, 30.0, -30.0, 1e4, -1e4, 3e38, -3e38]]).astype(np.float32)
ft = np.concatenate([t[:500], np.round(t[500:]), [0.0, 1.0, 1.0, 0.0, 1.0, 0.3, 0.0, 1.0]])
ft = ft.astype(np.float32)
focal = {}
for options in ({}, {"gamma": 1.0, "alpha": -1.0}, {"gamma": 0.0, "alpha": 0.9}):
    name = "focal" + "".join(f"_{k}={v:g}" for k, v in options.items())
    each = fastloss.sigmoid_focal_loss(fx, ft, reduction="none", **options)
    rows = fastloss.sigmoid_focal_loss(fx.reshape(8, 126), ft.reshape(8, 126), reduction="sum",
                                       sample_weight=np.linspace(0.5, 2.0, 8), **options)
    focal.update({name: each.loss.tolist(), name + "_grad": each.grad.tolist(),
                  name + "_weighted_sum": rows.loss, name + "_weighted_grad": rows.grad.tolist()})
print(json.dumps({"kernels": config["kernels"],
                  "module": fastloss._dispatch.elementwise_kernels.__name__,
                  "bce": bce.loss.tolist(), "bce_grad": bce.grad.tolist(),
                  "ce": ce.loss, "ce_grad": ce.grad.tolist(), **focal}))
"""


def test_forced_baseline_runs_and_agrees_with_the_default():
    forced = json.loads(run_python(CODE, FASTLOSS_FORCE_BASELINE="1"))
    default = json.loads(run_python(CODE, FASTLOSS_FORCE_BASELINE="0"))
    assert forced["kernels"] == "baseline"
    assert forced["module"] == "fastloss._elementwise_kernels"
    # Both builds compute the same formulas; FMA may change the last bits.  A focal
    # gradient is a difference of terms of at most 2 in size here (1 times the
    # weights), each build within 8 float32 ulps of them: the two agree to 16 ulps
    # of 2, not of the result.
    assert forced.keys() == default.keys()
    for key in forced.keys() - {"kernels", "module"}:
        atol = 16 * 2.0**-22 if key.startswith("focal") and "grad" in key else 1e-12
        np.testing.assert_allclose(forced[key], default[key], rtol=2e-6, atol=atol,
                                   err_msg=key)
