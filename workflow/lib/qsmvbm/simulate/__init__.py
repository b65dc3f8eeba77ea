"""The cohort simulator: a BIDS dataset of multi-echo GRE + T1w with ground truth.

Users run it for demos and power analyses (``qsmvbm-simulate CONFIG OUTDIR``);
the tests use it to check that the pipeline recovers what was planted.

Modules: :mod:`.settings` (config), :mod:`.cohort` (participants, clinical
scores, per-subject effect sizes), :mod:`.phantom` (the head model in MNI
space), :mod:`.subject` (one subject's images and truth), :mod:`.cli`.
"""
