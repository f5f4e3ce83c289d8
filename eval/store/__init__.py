"""The trajectory store: a reference run recorded once, read many times.

- ``trajectory``: the stored run (the ``[records, pool]`` loss matrix, steps, order parameters,
  onsets, baselines, the pool, checkpoints, a manifest with sha256 of every file);
- ``runner``: ``load_or_record``, the cache keyed by the config hash;
- ``suite``: many runs (families x seeds) in worker processes, checked against the suite's rules.
"""
