"""`npflows check-flow pkg.mod:factory`: every toolkit assertion that applies, on a user's flow.

factory(rng) returns a flow (anything with forward/reverse), a FlowModel or a base. Checks, in
order: bijection (flows and FlowModels), causal (an autoregressive flow's network), normalised
(FlowModels and bases, when K**length is small enough to enumerate) and gradients (the training
pass of a float64 copy, flows through the linearised straight-through argmax). One row per
check: passed, failed (the assertion's message) or skipped (why).
"""

import copy

import numpy

from layers import DiscreteAutoregressiveFlow
from npflows.errors import ConfigError
from npflows.module import Module

from .flows import assert_bijection, assert_causal, assert_normalized, random_ids
from .gradients import assert_gradients

NORMALIZED_LIMIT = 1 << 16


def _checks(model, K, length, seed):
    """[(name, check, why it is skipped or None)]."""
    network = getattr(model, "network", None)
    is_flow = all(callable(getattr(model, method, None)) for method in ("forward", "reverse"))
    autoregressive = isinstance(model, DiscreteAutoregressiveFlow) or (
        getattr(network, "causal", None) is True
    )
    has_log_prob = callable(getattr(model, "log_prob", None))
    enumerable = K**length <= NORMALIZED_LIMIT
    return [
        (
            "bijection",
            lambda: assert_bijection(model, K, length, seed=seed),
            None if is_flow else "not a flow (no forward/reverse)",
        ),
        (
            "causal",
            lambda: assert_causal(network, K, length, seed=seed),
            None if autoregressive else "no autoregressive network",
        ),
        (
            "normalized",
            lambda: assert_normalized(model, K, length),
            None
            if has_log_prob and enumerable
            else ("no log_prob" if not has_log_prob else f"K**length = {K**length} is too many"),
        ),
        (
            "gradients",
            lambda: _gradients(model, K, random_ids(seed, 3, length, K), seed),
            None if type(model).backward is not Module.backward else "no backward to audit",
        ),
    ]


def _gradients(model, K, ids, seed):
    from layers import one_hot
    from layers.onehot import parameter_dtype

    audited = copy.deepcopy(model).astype(numpy.float64)  # the audit's precision; linearising
    inputs = one_hot(ids, K, parameter_dtype(audited))
    return assert_gradients(audited, inputs, seed=seed, name=type(model).__name__)


def check_flow(model, K, length, seed=0):
    """[{check, result ("pass", "FAIL" or "skipped"), detail}] for `model`."""
    rows = []
    for name, check, skipped in _checks(model, K, length, seed):
        if skipped:
            rows.append({"check": name, "result": "skipped", "detail": skipped})
            continue
        try:
            check()
            rows.append({"check": name, "result": "pass", "detail": ""})
        except AssertionError as error:
            rows.append({"check": name, "result": "FAIL", "detail": str(error)})
        except Exception as error:  # a check that cannot run on this model fails; the rest run
            rows.append(
                {"check": name, "result": "FAIL", "detail": f"{type(error).__name__}: {error}"}
            )
    return rows


def build(factory, seed, length=None, K=None):
    """(model, K, length) from a user's factory(rng); ConfigError when K or length is unknown."""
    model = factory(numpy.random.default_rng(seed))
    K = K or getattr(model, "K", None)
    base = getattr(model, "base", model)
    length = length or getattr(base, "length", None)
    if not K or not length:
        raise ConfigError(
            f"check-flow: expected --K and --length (the model does not say them), got "
            f"K={K}, length={length}"
        )
    return model, K, length


def format_rows(rows):
    lines = [f"{'check':<12} {'result':<8} detail", "-" * 60]
    for row in rows:
        detail = row["detail"].replace("\n", "\n" + " " * 22)
        lines.append(f"{row['check']:<12} {row['result']:<8} {detail}".rstrip())
    failed = sum(row["result"] == "FAIL" for row in rows)
    passed = sum(row["result"] == "pass" for row in rows)
    lines.append(f"{passed} passed, {failed} failed, {len(rows) - passed - failed} skipped")
    return "\n".join(lines)
