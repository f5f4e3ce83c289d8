"""The slice grammar in brief, for the command line's help (``probekit selectors concern``).

Parsing lives in :mod:`probekit.selection.slices.parse`, matching in
:mod:`probekit.selection.slices.rows`; ``docs/slices.md`` is the full reference. The tests parse every
one of :data:`EXAMPLES` and check that GRAMMAR shows each.
"""
from __future__ import annotations

#: One spec of each form; each parses (given the files it names) and runs on builtin:toy-text.
EXAMPLES = (
    "topic=astronomy", "topic in astronomy,music", "astro-pos: topic=astronomy & label=1", "ids:toy-00001a,toy-00001b",
    "ids@watch.txt", "query@queries.jsonl", "query:topic=astronomy", "bias:group,label,pairs=pair_id",
    "rare:topic", "rare:topic,below=0.05", "rare:clusters,k=16", "specs.json",
    '{"name": "astro", "where": {"topic": "astronomy"}}',
)

#: The grammar in brief (``probekit selectors concern``); docs/slices.md has the rest.
GRAMMAR = """\
SPEC      := [NAME ":"] BODY | FILE.json | JSON
BODY      := PREDICATE                          the matching examples, in a seeded random order
           | "ids:" ID {"," ID} | "ids@" FILE   the listed ids (FILE: one id a line, or a .json list)
           | "query@" FILE | "query:" PREDICATE
                                                pool examples that cover a query set (facility location)
           | "bias:" PROTECTED ["," LABEL] ["," "pairs=" COLUMN]
                                                balanced over PROTECTED x LABEL, pairs kept together
           | "rare:" COLUMN ["," "below=" F]    EVERY value of COLUMN equally, rarest first
           | "rare:clusters" ["," "k=" K] ["," "below=" F]
                                                every embedding cluster equally, smallest first
PREDICATE := CLAUSE {"&" CLAUSE}
CLAUSE    := COLUMN OP VALUE | COLUMN ("in" | "not in") VALUE {"," VALUE}
OP        := "=" | "==" | "!=" | ">" | ">=" | "<" | "<="

Budget: the slices share the n probes equally (--param budget=[3,1] or {"NAME": w} to weight
them), interleaved so that every prefix keeps each slice within about one probe of its share;
--param background=F gives the fraction F to uniformly random examples. An example belongs to
the first slice that reaches it. A slice that runs out gives its share back to the others; when
all have run out, random background probes fill the rest.

One value, not every value: rare:COLUMN splits its share over EVERY value of the column (with
nine topics the rare one gets 1/9 of it). To target one value, write a predicate:
topic=astronomy. To target every value rarer than a fraction F of the pool without naming it:
rare:topic,below=0.05.

below=F keeps the values (clusters) holding less than the fraction F of the pool; k: k-means
clusters (default sqrt(N/2) within [2, 32]). NAME: labels the slice's probes; 'background' is
reserved. Quote values holding , & : " with "..." or '...'.
"""
