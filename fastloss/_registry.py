"""The registry: every public function of fastloss declared once.

Design: a declaration (:class:`Loss`) says what the package needs to know
about a loss, as data:

* its name and family ("elementwise", "multiclass", "rows" for the row
  utilities, "linear" for the fused linear cross-entropy);
* its inputs (the positional arguments, e.g. ("pred", "target") or
  ("mean", "target", "var")) and the inputs it returns a gradient for (the
  first by default; several make ``grad`` a tuple);
* its parameters with their defaults and rules (:mod:`fastloss._checks`),
  its target rule (:mod:`fastloss._targets`) and the prediction shapes;
* its kernel, whether it computes the Hessian's diagonal, and its
  ``torch.nn.functional`` counterpart, if any;
* for an elementwise loss, the NumPy formula of one element (loss,
  gradient, Hessian), from which ``fastloss.reference`` builds the twin;
* the two cells of its row in the README's loss table.

The docstring, signature and type hints are those of the fast function the
declaration decorates (``@DECLARATION.declare``), which checks at import that
the signature agrees with the declaration.  Everything else derives from the
registry: ``fastloss.__all__``, the names of ``fastloss.reference`` and its
twins (signature and docstring included), the README table
(:func:`loss_table`), and the tests' and benchmarks' checks that every
registered loss has its cases.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from fastloss._checks import Param, scalar_checker, shaped_checker
from fastloss._targets import REAL, TargetRule

FAMILIES = ("elementwise", "multiclass", "rows", "linear")
LOSS_FAMILIES = ("elementwise", "multiclass")

# The keyword-only arguments every loss takes after its parameters, with their defaults.
COMMON = {"sample_weight": None, "reduction": "mean", "grad": True, "hess": False, "out": None,
          "n_threads": None}

F = TypeVar("F", bound=Callable[..., Any])


class Loss:
    """The declaration of one public function (see the module docstring).

    Attributes:
      name: the function's name in ``fastloss`` and ``fastloss.reference``.
      family: one of FAMILIES.
      inputs: the positional arguments, in order.
      gradients: the inputs differentiated (``grad`` is a tuple when several);
        the first input when not given.
      params: the keyword-only loss parameters, in signature order.
      target: the target rule.
      ndims: the accepted numbers of dimensions of the first input.
      kernel: the name of the fused kernel in the family's kernel module.
      hess: whether ``hess=True`` is supported.
      takes_hess: whether the function takes ``hess`` at all (by default
        when it is supported; a piecewise-linear loss such as l1 takes it
        and refuses True with a ValueError).
      input_rules: the rules of the inputs after the target that the kernel
        checks (gaussian_nll's var: ``VARIANCES``), by input name.
      broadcast_inputs: the inputs after the target that may also broadcast
        against the first (torch's rule for gaussian_nll_loss's var: its shape
        without the last dimension, or one dimension of size 1).
      torch: the ``torch.nn.functional`` counterpart, or None.
      formula: elementwise losses: ``formula(*inputs, *params, hess=bool)
        -> (loss, grad, hess)`` of every element, in NumPy (``grad`` a tuple
        when several gradients; ``hess`` None unless asked).
      doc_shapes, doc_loss: the README table's "prediction / target" and
        "per-sample loss" cells.
      shape_error: the error when the first input has a number of
        dimensions that ``ndims`` excludes but the family allows (formatted
        with ``shape``); by default "<input> must be 1-D, got shape ...".

    Derived: ``extra_outs`` (the ``out_<input>`` arguments of the gradients
    after the first), ``checked`` (the one input whose values the kernel
    checks and its rule, as a pair, or None), ``check_scalars(values)`` and ``check_shaped(values,
    shape)`` (the parameters' rules, bound once; the latter None when no
    rule needs the predictions' shape).

    A declaration is read-only once made (a class with slots rather than a
    dataclass: it is read on every call, and defined at import).
    """

    __slots__ = ("name", "family", "inputs", "gradients", "params", "target", "ndims",
                 "kernel", "hess", "takes_hess", "input_rules", "broadcast_inputs", "torch",
                 "formula", "doc_shapes", "doc_loss", "shape_error", "extra_outs", "checked",
                 "check_scalars", "check_shaped")

    name: str
    family: str
    inputs: tuple[str, ...]
    gradients: tuple[str, ...]
    params: tuple[Param, ...]
    target: TargetRule
    ndims: tuple[int, ...]
    kernel: str
    hess: bool
    takes_hess: bool
    input_rules: dict[str, TargetRule]
    broadcast_inputs: tuple[str, ...]
    torch: str | None
    formula: Callable[..., Any] | None
    doc_shapes: str
    doc_loss: str
    shape_error: str
    extra_outs: tuple[str, ...]
    checked: tuple[str, TargetRule] | None
    check_scalars: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    check_shaped: Callable[[tuple[Any, ...], tuple[int, ...]], tuple[Any, ...]] | None

    def __init__(self, name: str, family: str, *, inputs: tuple[str, ...] = ("pred", "target"),
                 gradients: tuple[str, ...] = (), params: tuple[Param, ...] = (),
                 target: TargetRule = REAL, ndims: tuple[int, ...] = (1, 2), kernel: str = "",
                 hess: bool = False, takes_hess: bool | None = None,
                 input_rules: dict[str, TargetRule] | None = None,
                 broadcast_inputs: tuple[str, ...] = (), torch: str | None = None,
                 formula: Callable[..., Any] | None = None, doc_shapes: str = "",
                 doc_loss: str = "", shape_error: str = "") -> None:
        if family not in FAMILIES:
            raise ValueError(f"{name}: unknown family {family!r}")
        if not gradients and family != "rows":
            gradients = inputs[:1]
        unknown = set(gradients) - set(inputs)
        if unknown:
            raise ValueError(f"{name}: gradients {sorted(unknown)} are not inputs")
        input_rules = dict(input_rules or {})
        unknown = (set(input_rules) | set(broadcast_inputs)) - set(inputs[2:])
        if unknown:
            raise ValueError(f"{name}: {sorted(unknown)} are not inputs after the target")
        rules = [("target", target)] * (len(inputs) > 1) + list(input_rules.items())
        scanned = [(input_name, rule) for input_name, rule in rules if rule.scan]
        if len(scanned) > 1:
            raise ValueError(f"{name}: the kernels check the values of one input at most")
        if not shape_error:
            expected = " or ".join(f"{ndim}-D" for ndim in ndims)
            shape_error = f"{inputs[0]} must be {expected}, got shape {{shape}}"
        fields = dict(
            name=name, family=family, inputs=inputs, gradients=gradients, params=params,
            target=target, ndims=ndims, kernel=kernel, hess=hess,
            takes_hess=hess if takes_hess is None else takes_hess,
            input_rules=input_rules, broadcast_inputs=broadcast_inputs, torch=torch,
            formula=formula, doc_shapes=doc_shapes, doc_loss=doc_loss,
            shape_error=shape_error,
            # out= receives the first gradient; out_<input>= each further one
            extra_outs=tuple(f"out_{input_name}" for input_name in gradients[1:]),
            checked=scanned[0] if scanned else None,
            # the parameters' checks, bound once (see fastloss._checks)
            check_scalars=scalar_checker(params), check_shaped=shaped_checker(params))
        for field_name, value in fields.items():
            object.__setattr__(self, field_name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the declaration of {self.name} is read-only")

    def __repr__(self) -> str:
        return f"Loss({self.name!r}, {self.family!r})"

    @property
    def pred_name(self) -> str:
        return self.inputs[0]

    def declare(self, function: F) -> F:
        """Register ``function`` as this loss's fast function, after checking its signature."""
        if function.__name__ != self.name:
            raise TypeError(f"the declaration of {self.name} decorates {function.__name__}")
        check_signature(self, function)
        if self.name in REGISTRY:
            raise ValueError(f"{self.name} is declared twice")
        REGISTRY[self.name] = self
        _FUNCTIONS[self.name] = function
        return function

    @property
    def function(self) -> Callable[..., Any]:
        """The fast function."""
        return _FUNCTIONS[self.name]

    def keyword_defaults(self) -> dict[str, Any]:
        """The keyword-only arguments of a loss of a family with the common tail, in order."""
        defaults = {param.name: param.default for param in self.params}
        for name, default in COMMON.items():
            if name == "hess" and not self.takes_hess:
                continue
            defaults[name] = default
            if name == "out":
                defaults.update((extra, None) for extra in self.extra_outs)
        return defaults


REGISTRY: dict[str, Loss] = {}
_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def check_signature(spec: Loss, function: Callable[..., Any]) -> None:
    """The function's positional arguments are the declared inputs; its keyword-only
    arguments the declared parameters (same defaults) and, for the loss families,
    the common tail.

    Read from the code object (``inspect.signature`` costs a tenth of a
    millisecond per function at every import).
    """
    code = function.__code__
    positional = code.co_varnames[:code.co_argcount]
    names = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
    defaults = function.__kwdefaults__ or {}
    keywords = {name: defaults.get(name, _REQUIRED) for name in names}
    if positional != spec.inputs:
        raise TypeError(f"{spec.name}: positional arguments {positional}, "
                        f"declared inputs {spec.inputs}")
    if spec.family in LOSS_FAMILIES:
        expected = spec.keyword_defaults()
    else:
        expected = {param.name: param.default for param in spec.params}
        keywords = {name: keywords[name] for name in expected if name in keywords}
    if list(keywords.items()) != list(expected.items()):
        raise TypeError(f"{spec.name}: keyword-only arguments {keywords}, declared {expected}")


_REQUIRED = object()


def twin_of(fast: Callable[..., Any]) -> Callable[[F], F]:
    """Give a hand-written reference function the fast function's docstring and type hints,
    after checking that the two signatures agree (names, kinds and defaults)."""
    def decorate(function: F) -> F:
        ours = [(p.name, p.kind, p.default)
                for p in inspect.signature(function).parameters.values()]
        theirs = [(p.name, p.kind, p.default)
                  for p in inspect.signature(fast).parameters.values()]
        if ours != theirs:
            raise TypeError(f"the reference {function.__name__} has the signature {ours}, "
                            f"the fast one {theirs}")
        function.__doc__ = fast.__doc__
        function.__annotations__ = dict(fast.__annotations__)
        return function
    return decorate


def derived_twin(spec: Loss, runner: Callable[..., Any], module: str,
                 fast: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """A function with the signature, docstring and type hints of ``spec``'s fast function
    (or of ``fast``) whose body is ``runner(spec, inputs, params, sample_weight, reduction,
    grad, hess, outs, n_threads)`` (``inputs``, ``params`` and ``outs`` tuples in declared
    order).

    It is written out as Python source and compiled, as ``dataclasses`` and
    ``namedtuple`` make their methods, so that calling it costs what calling
    a hand-written function costs and a wrong call raises Python's own error.
    """
    fast = spec.function if fast is None else fast
    signature = inspect.signature(fast)
    defaults = {name: p.default for name, p in signature.parameters.items()
                if p.default is not inspect.Parameter.empty}
    keywords = [f"{name}=_defaults[{name!r}]" for name, p in signature.parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]
    header = ", ".join(list(spec.inputs) + ["*"] + keywords)
    inputs = "".join(f"{name}, " for name in spec.inputs)
    params = "".join(f"{param.name}, " for param in spec.params)
    outs = "".join(f"{name}, " for name in ("out",) + spec.extra_outs)
    hess = "hess" if spec.takes_hess else "False"
    source = (f"def {spec.name}({header}):\n"
              f"    return _runner(_spec, ({inputs}), ({params}), sample_weight, reduction, "
              f"grad, {hess}, ({outs}), n_threads)\n")
    namespace: dict[str, Any] = {"_runner": runner, "_spec": spec, "_defaults": defaults}
    exec(compile(source, f"<fastloss twin of {spec.name}>", "exec"), namespace)
    twin = namespace[spec.name]
    twin.__module__ = module
    twin.__doc__ = fast.__doc__
    twin.__annotations__ = dict(fast.__annotations__)
    return twin


def public_names() -> list[str]:
    """The registered names, in declaration order."""
    return list(REGISTRY)


def losses(*families: str) -> list[Loss]:
    """The declarations of the given families (every loss family when none is given)."""
    families = families or LOSS_FAMILIES
    return [spec for spec in REGISTRY.values() if spec.family in families]


# --- the README's loss table -------------------------------------------------------

TABLE_START = "<!-- loss table: generated from fastloss/_registry.py by tools/loss_table.py -->"
TABLE_END = "<!-- end of the loss table -->"


def _python(value: Any) -> str:
    """A default as written in the signature (strings in double quotes)."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def call_text(spec: Loss) -> str:
    """``huber(pred, target, *, delta=1.0)``: the inputs and the loss parameters."""
    params = ", ".join(f"{param.name}={_python(param.default)}" for param in spec.params)
    inputs = ", ".join(spec.inputs)
    return f"{spec.name}({inputs}, *, {params})" if params else f"{spec.name}({inputs})"


def loss_table() -> str:
    """The README's table of losses, one row per registered loss (the two loss families)."""
    lines = ["| function | prediction / target | per-sample loss |", "| --- | --- | --- |"]
    for spec in losses():
        lines.append(f"| `{call_text(spec)}` | {spec.doc_shapes} | {spec.doc_loss} |")
    return "\n".join(lines)
