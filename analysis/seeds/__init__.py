"""Distributions across random seeds (Zhao et al. 2025): the analysis
(:mod:`.distributions`), its plot and CLI."""

from .distributions import (  # noqa: F401
    InverseScaling,
    Mixture,
    PSuccessFit,
    SeedDistributionResults,
    dip_test,
    fit_mixture,
    fit_psuccess,
    kde_mode,
    parse_seed,
    seed_distributions,
    wasserstein_test,
)
