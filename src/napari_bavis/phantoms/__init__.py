"""Synthetic aging cohort built from nilearn's MNI152 2009 templates (no download).

Ground truth for training and for scoring explanation maps: every subject has a known age,
sex and CDR, and boolean masks of where aging and disease changed its images.
See docs/phantoms.md.
"""

from .generator import (
    CDRS,
    DEFAULT_CDR_WEIGHTS,
    DISEASE_YEARS,
    SAMPLE_KINDS,
    PhantomError,
    Subject,
    effect_sizes,
    make_cohort,
    make_subject,
    plan_cohort,
    sample_subject,
)

__all__ = [
    "CDRS",
    "DEFAULT_CDR_WEIGHTS",
    "DISEASE_YEARS",
    "SAMPLE_KINDS",
    "PhantomError",
    "Subject",
    "effect_sizes",
    "make_cohort",
    "make_subject",
    "plan_cohort",
    "sample_subject",
]
