"""Constants of the tiny BIDS dataset (conftest.py builds it). A module of its own: test files import
these by name, and ``from conftest import`` would find another folder's conftest in a full run."""

#: (subject, session, seed, age, sex)
SCANS = (("01", None, 1, 62.0, "F"), ("02", "01", 2, 71.0, "M"), ("02", "02", 3, 74.0, "M"))
#: options that keep the participant runs fast and deterministic (no timing-based defaults)
FAST = ["--model", "demo", "--methods", "gradcam++", "--no-region-importance", "--no-faithfulness", "--quiet"]
