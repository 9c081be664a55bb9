import os

from hypothesis import HealthCheck, settings

# "ci" keeps the suite fast; "nightly" is the larger profile (HYPOTHESIS_PROFILE=nightly).
settings.register_profile("ci", max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
