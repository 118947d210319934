"""Oracles and assertions for testing minirtrl and for cross-checking other code.

* ``finite``: ``numerical_gradient``, ``numerical_jacobian`` (central finite differences,
  float64, host); ``assert_close`` (an array of any library against a reference, after
  checking namespace, shape, dtype and device); ``relative_error``, ``random_problem``.
* ``steps``: ``exact_step`` (exact RTRL's step from any dense influence, the oracle of one
  step); ``sign_patterns``, ``expected_step`` (the exact mean of one estimator step over
  every sign pattern, small cells); ``expected_of`` (the same for a caller's own step).
* ``stats``: ``unbiasedness_z``, ``assert_unbiased``, ``z_threshold`` (the mean of many
  seeded estimates against the exact value, in standard errors); ``detectable_bias`` and
  ``seeds_needed`` (what such a test sees with N seeds, and the N a given bias needs);
  ``compare_noise`` (the noise of two estimators side by side); ``check_signs`` (a sign
  sampler's values, fairness and independence).
* ``layout``: ``input_first``, ``state_first``, ``flatten_influence``,
  ``unflatten_influence`` (minirtrl's parameter and influence layout and two common others).
* ``crosscheck``: ``check`` (one call for every check that applies to your ``Estimator``,
  returning a readable ``Report``).

Everything here copies to NumPy, which is right for tests and wrong in library code.
"""

from .._compat import to_numpy  # for tests too
from .crosscheck import Check, Estimator, Report, check
from .finite import (
    assert_close,
    numerical_gradient,
    numerical_jacobian,
    random_problem,
    relative_error,
    sequence_loss,
)
from .layout import flatten_influence, input_first, state_first, unflatten_influence
from .stats import (
    NoiseComparison,
    SignCheck,
    assert_unbiased,
    check_signs,
    compare_noise,
    detectable_bias,
    relative_noise,
    seeds_needed,
    unbiasedness_z,
    z_threshold,
)
from .steps import (
    MAX_PATTERNS,
    StepExpectation,
    exact_step,
    expected_of,
    expected_step,
    sign_patterns,
)

__all__ = [
    "MAX_PATTERNS",
    "Check",
    "Estimator",
    "NoiseComparison",
    "Report",
    "SignCheck",
    "StepExpectation",
    "assert_close",
    "assert_unbiased",
    "check",
    "check_signs",
    "compare_noise",
    "detectable_bias",
    "exact_step",
    "expected_of",
    "expected_step",
    "flatten_influence",
    "input_first",
    "numerical_gradient",
    "numerical_jacobian",
    "random_problem",
    "relative_error",
    "relative_noise",
    "seeds_needed",
    "sequence_loss",
    "sign_patterns",
    "state_first",
    "to_numpy",
    "unbiasedness_z",
    "unflatten_influence",
    "z_threshold",
]
