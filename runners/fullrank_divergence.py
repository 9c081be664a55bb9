"""How far a model q is from a known distribution p over K^D outcome indices, without a held-out sample.

Both functions take the model as `log_prob_of(indices) -> (n,) float64 log q(x)` on outcome
indices (runners/fullrank.py maps them to sequences), so neither ever holds all K^D sequences.
- `enumerated_cross_entropy`: H(p, q) = -sum_x p(x) log q(x) exactly, `chunk` outcomes at a time;
  KL(p || q) = H(p, q) - H(p). Costs one model evaluation per outcome (docs/results.md, Table 1,
  measures what that is for D = 10, K = 5).
- `sampled_kl`: where K^D is too many to enumerate, an unbiased estimate with its standard error
  from outcomes drawn from p, with a reference distribution r whose KL(p || r) is known exactly
  (the product of p's marginals: KL = total correlation) as control variate:
      KL(p || q) = KL(p || r) + E_p[log r(x) - log q(x)].
  The second term's per-sample spread is small when q is close to r (a model that learned
  little beyond the marginals), where the plain E_p[log p - log q] would carry the full spread
  of log p(x) (about 0.8 nats for a Dirichlet(1) table).
"""

import numpy


def enumerated_cross_entropy(log_prob_of, probs, chunk=8192):
    """-sum_x p(x) log q(x) in nats over every index of `probs`; outcomes with p(x) = 0 add 0."""
    if chunk < 1:
        raise ValueError(f"enumerated_cross_entropy: expected a positive chunk, got {chunk}")
    partial_sums = []
    for start in range(0, len(probs), chunk):
        indices = numpy.arange(start, min(start + chunk, len(probs)), dtype=numpy.int64)
        chunk_probs = probs[indices]
        support = chunk_probs > 0
        log_probs = numpy.asarray(log_prob_of(indices), dtype=numpy.float64)
        partial_sums.append(-(chunk_probs[support] * log_probs[support]).sum())
    return float(numpy.sum(partial_sums))


def sampled_kl(log_prob_of, log_reference_of, reference_kl, indices):
    """(estimate, standard error) of KL(p || q) in nats from `indices` drawn i.i.d. from p.

    log_reference_of: indices -> log r(x) of the reference r, reference_kl = KL(p || r) exactly."""
    if len(indices) < 2:
        raise ValueError(f"sampled_kl: expected at least 2 sampled outcomes, got {len(indices)}")
    differences = numpy.asarray(log_reference_of(indices), dtype=numpy.float64) - numpy.asarray(
        log_prob_of(indices), dtype=numpy.float64
    )
    standard_error = differences.std(ddof=1) / numpy.sqrt(len(differences))
    return float(reference_kl + differences.mean()), float(standard_error)
