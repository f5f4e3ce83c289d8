"""What the selection strategies (``probekit.selectors``) share, and nothing else uses.

- ``apportionment``: which source gets the k-th probe, so every prefix keeps its shares
  (the mixture, random-stratified, concern and response strategies interleave with it);
- ``faiss_kmeans``: the one boundary to faiss, seeded and quiet k-means and nearest search;
- ``grad_sketch``: per-sample gradients (``torch.func``) sketched to one vector per example;
- ``slices``: the concern strategy's slice specs, the rows they name, the per-slice orderings.
"""
