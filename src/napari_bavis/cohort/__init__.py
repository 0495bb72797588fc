"""Cohorts the way neuroimaging labs run them (issue 16).

``bids``: the BIDS-App participant level (``sub-*/[ses-*/]anat/*_T1w`` in, BIDS derivatives out,
resumable, one line per bad scan); ``group``: the group level (one table, a bias correction fitted
on a chosen group, the gap by group, mean maps per group in MNI space, a summary figure);
``backends``: where the participant jobs run (in this process, N processes, or Dask distributed).
``scans``, ``covariates``, ``jobs``, ``results``: ``napari-bavis analyze FOLDER``'s engine (finding
scans, output names, shards, ages and sexes from a table, one scan's job, ``results.csv``).
Usable from Python; ``napari-bavis bids`` and ``analyze`` (``cli/``) are thin layers over it.
"""
