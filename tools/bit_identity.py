"""Bit identity of two builds of fastloss: every loss and row utility on a grid of inputs.

Runs every registered loss (tests/cases.py: each option variant, float32 and
float64, several shapes, ordinary, scaled and extreme inputs with +-1e4,
+-huge, +-inf and NaN; reductions "none" and "mean", sample weights, no
gradient, the Hessian where supported), the focal loss's gammas, the
cross-entropy's options, the row utilities and an in-place call, and stores
a SHA-256 of each result's bytes.  Compare two such files (two checkouts, or
two builds: FASTLOSS_FORCE_BASELINE=1 picks the baseline)::

    PYTHONPATH=CHECKOUT_A python tools/bit_identity.py run a.pkl
    PYTHONPATH=CHECKOUT_B python tools/bit_identity.py run b.pkl
    python tools/bit_identity.py compare a.pkl b.pkl
"""
import collections
import hashlib
import os
import pickle
import sys

import numpy as np


def run(path):
    import fastloss
    from fastloss import _dispatch
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastloss.__file__)))
    sys.path.insert(0, os.path.join(root, "tests"))
    import cases as C
    out = {"_path": _dispatch.PATH, "_file": fastloss.__file__}

    def bits(r):
        if isinstance(r, np.ndarray):
            return r.tobytes()
        parts = []
        for name in ("loss", "grad", "hess"):
            v = getattr(r, name, None)
            if v is None:
                parts.append(b"-")
            elif isinstance(v, tuple):
                parts.append(b"|".join(np.asarray(t).tobytes() for t in v))
            else:
                parts.append(np.asarray(v, dtype=np.float64 if np.ndim(v) == 0 else None).tobytes())
        return b"#".join(parts)

    def record(key, f):
        try:
            out[key] = hashlib.sha256(bits(f())).hexdigest()
        except Exception as e:       # the same exception in both builds is the same result
            out[key] = ("raised", type(e).__name__, str(e))

    def extreme(pred, rng, dtype):
        p = pred.copy()
        flat = p.reshape(-1)
        n = flat.size
        big = np.float32(3e38) if dtype == np.float32 else 1e300
        for value, frac in ((1e4, 0.05), (-1e4, 0.05), (big, 0.01), (-big, 0.01),
                            (np.inf, 0.01), (-np.inf, 0.02), (np.nan, 0.01)):
            idx = rng.integers(0, n, max(1, int(frac * n)))
            flat[idx] = value
        return p

    MULTI_SHAPES = [(37, c) for c in (1, 2, 3, 7, 8, 9, 16, 17, 20, 31, 32, 33, 40, 64, 65,
                                       100, 257, 1000, 1024, 1025, 2048)]
    ELEM_SHAPES = [(1, 1), (7, 1), (33, 3), (100, 10), (7001, 10)]
    for case in C.ALL_CASES:
        family = case.spec.family
        shapes = MULTI_SHAPES if family == "multiclass" else ELEM_SHAPES
        takes_hess = getattr(case.spec, "hess", False)
        for option, make_options in case.options.items():
            for dtype in (np.float32, np.float64):
                for si, (r, c) in enumerate(shapes):
                    shape = C.shape_for(case, r, c)
                    rng = np.random.default_rng(1000 * si + 7)
                    try:
                        pred, target = case.make_inputs(rng, shape, dtype)
                    except Exception as e:
                        continue
                    weight = rng.uniform(0.1, 2.0, size=shape[0])
                    opts = make_options(shape)
                    for vname, p in (("normal", pred), ("scaled", (pred * 7).astype(dtype)),
                                     ("extreme", extreme(pred, rng, dtype))):
                        base = f"{case!r}|{option}|{np.dtype(dtype).name}|{shape}|{vname}"
                        for red in ("none", "mean"):
                            record(base + f"|{red}", lambda: case.fast(p, target, reduction=red, **opts))
                        record(base + "|sw", lambda: case.fast(p, target, sample_weight=weight,
                                                               reduction="none", **opts))
                        record(base + "|nograd", lambda: case.fast(p, target, grad=False,
                                                                   reduction="none", **opts))
                        if takes_hess:
                            record(base + "|hess", lambda: case.fast(p, target, hess=True,
                                                                     reduction="none", **opts))

    # the focal loss's gammas and the cross-entropy's options beyond the cases' variants
    for dtype in (np.float32, np.float64):
        for si, (r, c) in enumerate(MULTI_SHAPES):
            rng = np.random.default_rng(si)
            x = (rng.standard_normal((r, c)) * 3).astype(dtype)
            labels = rng.integers(0, c, r)
            labels[::5] = -100
            cw = rng.uniform(0.2, 3.0, c)
            for vname, p in (("normal", x), ("extreme", extreme(x, rng, dtype))):
                base = f"extra|{np.dtype(dtype).name}|{(r, c)}|{vname}"
                for gamma in (0.0, 0.5, 1.0, 2.0, 3.5):
                    for hess in (False, True):
                        record(base + f"|focal{gamma}|{hess}", lambda: fastloss.softmax_focal_loss(
                            p, labels, gamma=gamma, class_weight=cw, ignore_index=-100,
                            reduction="none", hess=hess))
                    record(base + f"|focal{gamma}|nograd", lambda: fastloss.softmax_focal_loss(
                        p, labels, gamma=gamma, ignore_index=-100, grad=False, reduction="none"))
                for kw in ({}, {"label_smoothing": 0.1}, {"z_loss": 1e-4}, {"softcap": 30.0},
                           {"class_weight": cw, "label_smoothing": 0.2}, {"hess": True}):
                    record(base + f"|ce{sorted(kw)}", lambda: fastloss.softmax_cross_entropy(
                        p, labels, ignore_index=-100, reduction="none", **kw))
                    record(base + f"|ce{sorted(kw)}|nograd", lambda: fastloss.softmax_cross_entropy(
                        p, labels, ignore_index=-100, reduction="mean", grad=False,
                        **{k: v for k, v in kw.items() if k != "hess"}))
                for name in ("logsumexp", "softmax", "log_softmax"):
                    record(base + f"|{name}", lambda: getattr(fastloss, name)(p))
                inplace = p.copy()
                record(base + "|ce_inplace", lambda: (fastloss.softmax_cross_entropy(
                    inplace, np.where(labels < 0, 0, labels), out=inplace), inplace)[1])

    with open(path, "wb") as f:
        pickle.dump(out, f)
    print(len(out), "results,", out["_path"], out["_file"])


def _group(key):
    """function|dtype of a result's key (the extra calls: the call's kind)."""
    parts = key.split("|")
    if parts[0] == "extra":
        return "extra " + parts[4].split("[")[0].rstrip("0123456789.") + "|" + parts[1]
    return parts[0] + "|" + parts[2]


def compare(path_a, path_b):
    a = pickle.load(open(path_a, "rb"))
    b = pickle.load(open(path_b, "rb"))
    print(path_a, a["_path"], "vs", path_b, b["_path"])
    keys = [k for k in a if not k.startswith("_")]
    assert set(keys) == set(k for k in b if not k.startswith("_")), "different key sets"
    diff = [k for k in keys if a[k] != b[k]]
    print(f"{len(keys)} calls compared, {len(diff)} differ")
    groups = collections.Counter(_group(k) for k in diff)
    for group, count in sorted(groups.items()):
        print("  ", group, count)
    return not diff


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2])
    else:
        sys.exit(0 if compare(sys.argv[2], sys.argv[3]) else 1)
