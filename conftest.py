"""pytest's configuration for the whole source tree.

``python -m pytest --doctest-modules fastloss`` runs the docstring examples
of the package (.ci/run does).  Those of ``fastloss.torch`` need torch, an
optional dependency: without it that module is left out, and the run's
header says so.  ``examples/`` holds scripts and the showcase, which the
tests load themselves; it is never collected, as tests or as doctests.
"""
import importlib.util

HAS_TORCH = importlib.util.find_spec("torch") is not None

collect_ignore = ["examples"]
if not HAS_TORCH:
    collect_ignore.append("fastloss/torch.py")


def pytest_report_header(config):
    if not HAS_TORCH:
        return "fastloss/torch.py is not collected: torch is not installed"
    return None
