"""The LightGBM example: a custom objective on fastloss's gradient and Hessian
grows the same model as LightGBM's built-in objective."""
import numpy as np
import pytest

from helpers import load_example

lgb = pytest.importorskip("lightgbm")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def example():
    return load_example("boosting_custom_objective.py")


def test_custom_objectives_match_builtin_predictions(example):
    results = example.run(rounds=20, verbose=False)
    assert len(results) == 3
    for name, r in results.items():
        assert r["n_trees"] == (200 if "multiclass" in name else 20), name
        assert r["max_abs_score"] > 1.0, name          # the model moved off zero
        assert r["max_difference"] <= example.TOLERANCE, (name, r)


def test_comparison_detects_a_wrong_hessian(example):
    """The comparison is sensitive: a Hessian off by a factor of 2 grows another model."""
    name, features, labels, builtin, objective = example.problems()[0]

    def wrong(scores, data):
        grad, hess = objective(scores, data)
        return grad, 2.0 * hess

    builtin_booster, _ = example.train(features, labels, builtin, 20)
    wrong_booster, _ = example.train(features, labels, {**builtin, "objective": wrong}, 20)
    difference = np.max(np.abs(builtin_booster.predict(features, raw_score=True)
                               - wrong_booster.predict(features, raw_score=True)))
    assert difference > 0.1
