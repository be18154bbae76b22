"""torch.compile(fullgraph=True) of models using fastloss.torch: no graph break,
the fused kernel inside the graph (a torch custom operator), torch's values."""
import warnings

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fastloss.torch as flt  # noqa: E402

N_FEATURES, N_CLASSES = 6, 5


def generator(seed):
    return torch.Generator().manual_seed(seed)


def class_labels(n_rows, seed=1):
    return torch.randint(0, N_CLASSES, (n_rows,), generator=generator(seed))


def probabilities(n_rows, seed=1):
    return torch.softmax(torch.randn(n_rows, N_CLASSES, generator=generator(seed)), 1)


def uniform(n_rows, seed=1):
    return torch.rand(n_rows, N_CLASSES, generator=generator(seed))


def normal(n_rows, seed=1):
    return torch.randn(n_rows, N_CLASSES, generator=generator(seed))


CLASS_WEIGHT = torch.linspace(0.5, 2.0, N_CLASSES)
# name: (the loss as a function of (module, out, target), the target, the op)
CASES = {
    "cross_entropy": (lambda f, out, t: f.cross_entropy(out, t, label_smoothing=0.1),
                      class_labels, "cross_entropy"),
    "cross_entropy_weighted_none": (
        lambda f, out, t: f.cross_entropy(out, t, CLASS_WEIGHT, reduction="none"),
        class_labels, "cross_entropy"),
    "cross_entropy_probabilities": (lambda f, out, t: f.cross_entropy(out, t, reduction="sum"),
                                    probabilities, "cross_entropy"),
    "binary_cross_entropy_with_logits": (
        lambda f, out, t: f.binary_cross_entropy_with_logits(out, t, pos_weight=CLASS_WEIGHT),
        uniform, "binary_cross_entropy_with_logits"),
    "mse_loss": (lambda f, out, t: f.mse_loss(out, t), normal, "mse_loss"),
    "huber_loss": (lambda f, out, t: f.huber_loss(out, t, delta=0.5, reduction="none"), normal,
                   "huber_loss"),
    "multi_margin_loss": (lambda f, out, t: f.multi_margin_loss(out, t, p=2, margin=0.7),
                          class_labels, "multi_margin_loss"),
}


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, N_CLASSES))


def loss_and_grads(net, step, x, target):
    net.zero_grad()
    loss = step(x, target)
    loss.backward(torch.ones_like(loss))
    return loss.detach(), [p.grad.clone() for p in net.parameters()]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_model_has_no_graph_break_and_torchs_loss(name):
    loss_fn, make_target, op = CASES[name]
    net = model()
    x = torch.randn(16, N_FEATURES, generator=generator(0))
    target = make_target(16)

    def fast_step(x, target):
        return loss_fn(flt, net(x), target)

    explanation = torch._dynamo.explain(fast_step)(x, target)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    # The fused kernel runs inside the graph, as the custom operator.
    assert f"fastloss.{op}" in explanation.graphs[0].code
    torch._dynamo.reset()

    compiled = torch.compile(fast_step, fullgraph=True, backend="aot_eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grads = loss_and_grads(net, compiled, x, target)
        # A second batch size: a new trace (or a dynamic one), still no break.
        x2 = torch.randn(9, N_FEATURES, generator=generator(2))
        loss2, grads2 = loss_and_grads(net, compiled, x2, make_target(9, seed=3))
    ref_loss, ref_grads = loss_and_grads(net, lambda x, t: loss_fn(F, net(x), t), x, target)
    ref_loss2, ref_grads2 = loss_and_grads(net, lambda x, t: loss_fn(F, net(x), t), x2,
                                           make_target(9, seed=3))
    for got, expected in ((loss, ref_loss), (loss2, ref_loss2)):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    for got, expected in zip(grads + grads2, ref_grads + ref_grads2):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_compiled_inference_and_torchs_nan_mean():
    net = model()
    x = torch.randn(7, N_FEATURES, generator=generator(0))

    @torch.compile(fullgraph=True, backend="aot_eager")
    def evaluate(x, target):
        with torch.no_grad():
            return flt.cross_entropy(net(x), target)

    target = class_labels(7)
    torch.testing.assert_close(evaluate(x, target), F.cross_entropy(net(x), target).detach())
    # Every label ignored: the operator computes torch's answer (NaN).
    assert torch.isnan(evaluate(x, torch.full((7,), -100)))


OPCHECK_CASES = [
    # cross_entropy's last two arguments: z_loss, softcap
    ("cross_entropy", lambda x: (x, class_labels(len(x)), None, -100, "mean", 0.1, 0.0, None)),
    ("cross_entropy", lambda x: (x, class_labels(len(x)), CLASS_WEIGHT.to(x.dtype), 1,
                                 "none", 0.0, 0.0, None)),
    ("cross_entropy", lambda x: (x, probabilities(len(x)).to(x.dtype), None, -100, "sum",
                                 0.2, 0.0, None)),
    ("cross_entropy", lambda x: (x[0], class_labels(1)[0], None, -100, "none", 0.0, 0.0, None)),
    ("cross_entropy", lambda x: (x, class_labels(len(x)), CLASS_WEIGHT.to(x.dtype), 1,
                                 "mean", 0.1, 1e-3, 5.0)),
    ("binary_cross_entropy_with_logits", lambda x: (x, uniform(len(x)).to(x.dtype), None,
                                                    CLASS_WEIGHT.to(x.dtype), "mean")),
    ("binary_cross_entropy_with_logits", lambda x: (x, uniform(len(x)).to(x.dtype),
                                                    uniform(len(x), 4).to(x.dtype), None,
                                                    "none")),
    ("mse_loss", lambda x: (x, normal(len(x)).to(x.dtype), None, "sum")),
    ("mse_loss", lambda x: (x, normal(len(x)).to(x.dtype), uniform(len(x)).to(x.dtype),
                            "mean")),
    ("huber_loss", lambda x: (x, normal(len(x)).to(x.dtype), None, "none", 0.5)),
    ("multi_margin_loss", lambda x: (x, class_labels(len(x)), 1, 1.0, None, "none")),
    ("multi_margin_loss", lambda x: (x[0], class_labels(1), 2, 0.5, CLASS_WEIGHT.to(x.dtype),
                                     "none")),
]


@pytest.mark.parametrize("need_grad, dtype", [(True, torch.float32), (False, torch.float64)])
@pytest.mark.parametrize("case", range(len(OPCHECK_CASES)))
def test_custom_operators_pass_torchs_opcheck(case, need_grad, dtype):
    # torch.library.opcheck: the schema, the fake (shape) implementation, the
    # autograd registration and the operator's behaviour under tracing agree.
    name, make_args = OPCHECK_CASES[case]
    x = torch.randn(6, N_CLASSES, generator=generator(5), dtype=dtype)
    args = make_args(x.requires_grad_(need_grad))
    op = getattr(torch.ops.fastloss, name)
    torch.library.opcheck(op, args + (need_grad,))


@pytest.mark.slow
def test_inductor_compiled_model_gives_torchs_loss():
    net = model()
    x, target = torch.randn(32, N_FEATURES, generator=generator(0)), class_labels(32)
    compiled = torch.compile(lambda x, t: flt.cross_entropy(net(x), t), fullgraph=True)
    loss, grads = loss_and_grads(net, compiled, x, target)
    ref_loss, ref_grads = loss_and_grads(net, lambda x, t: F.cross_entropy(net(x), t), x,
                                         target)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
