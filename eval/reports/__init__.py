"""What ``probekit bench`` and the suite write for people to read.

- ``report``: ``results.json`` and ``report.md``, one function per report section;
- ``tables``: the report's rows and cell texts (warning, detection, the marks against random);
- ``peer_report``: the peers' section and figures (the 2RDM beside the indicators and the LLC);
- ``bench_figures``: the benchmark's figures, three per family;
- ``figures``: one figure per reference family (order parameters and mean loss against step).
"""
