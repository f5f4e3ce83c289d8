"""Slices: the concerns a ``ConcernSelector`` targets (``--slice``; docs/slices.md is the reference).

- ``spec``: the types (:class:`~probekit.selection.slices.spec.SliceSpec`), the allowed forms and
  the one-line error of a malformed spec;
- ``parse``: the string grammar, inline JSON, dicts and spec files -> specs (``parse_slices``);
- ``files``: id lists and query sets read from files or rows;
- ``rows``: a slice's examples in a pool;
- ``streams``: the per-slice orderings the concern strategy interleaves, and the interleaving;
- ``docs``: the grammar in brief, for ``probekit selectors concern``.
"""
