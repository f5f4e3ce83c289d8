"""``probekit selectors [NAME]``: the registered strategies, or one strategy in detail."""
from __future__ import annotations

import argparse

EPILOG = """\
examples:
  probekit selectors                  # every strategy, one line each, with its parameters
  probekit selectors concern          # one strategy: its parameters and the slice grammar
  probekit selectors mixture
"""

#: Docs for parameters several strategies share, where a strategy's source says nothing.
_COMMON_DOCS = {
    "text_field": "text column to embed (TF-IDF + truncated SVD)",
    "embedding_field": "column holding precomputed embeddings",
    "embedder": "an Embedder object (Python only); None: chosen from the pool's columns",
    "slices": "slice specs (the grammar below; docs/slices.md)",
}
_SLICES_DOC = "docs/slices.md"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "selectors",
        help="list the registered selection strategies, or show one in detail",
        description="List the selection strategies registered through the 'probekit.selectors' "
        "entry-point group (built-in and third-party), with one-line descriptions and parameters; "
        "with NAME, show that strategy in detail: what it does, each parameter's allowed values, "
        "default and meaning, and for strategies taking slices the slice grammar.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a strategy to show in detail (e.g. concern)")
    p.set_defaults(run=run)


def _describe(param) -> str:
    return param.name if param.default is param.empty else f"{param.name}={param.default!r}"


def run(args: argparse.Namespace) -> int:
    import inspect

    from probekit.errors import ProbekitError
    from probekit.registry import SELECTORS

    if args.name is not None:
        print(detail(args.name), end="")
        return 0
    for name in SELECTORS.names():
        try:
            cls = SELECTORS.load(name)
        except ProbekitError as exc:  # a broken plugin must not hide the others
            print(f"{name:<10} (cannot be loaded: {exc})")
            continue
        params = ", ".join(_describe(p) for p in inspect.signature(cls.__init__).parameters.values()
                           if p.name != "self")
        print(f"{name:<10} {SELECTORS.describe(name)}")
        print(f"{'':<10}   parameters: {params or '(none)'}")
    print("\n'probekit selectors NAME' shows one strategy in detail.")
    return 0


def detail(name: str) -> str:
    """The text of ``probekit selectors NAME`` (an unknown name: the registry's did-you-mean error)."""
    import inspect
    import shlex
    import sys
    import textwrap

    from probekit.cli.select_cmd import _FLAG_PARAMS, EPILOG as SELECT_EPILOG
    from probekit.params import _describe as allowed
    from probekit.registry import SELECTORS

    cls = SELECTORS.load(name)
    stochastic = cls.stochastic if isinstance(cls.stochastic, bool) else None  # a property: per instance
    seed = {True: "stochastic: the seed matters", False: "deterministic: the seed does not matter"}.get(
        stochastic, "whether the seed matters depends on its parameters")
    out = [f"{name}: {SELECTORS.describe(name)}", f"  class {cls.__module__}.{cls.__qualname__}; {seed}", ""]
    doc = _long_doc(cls, sys.modules.get(cls.__module__))
    if doc:
        out += [textwrap.indent(doc, "  "), ""]
    signature = inspect.signature(cls.__init__).parameters
    comments = _comments(cls)
    out.append("parameters (--param KEY=VALUE; values: numbers, true/false, none, JSON, text):")
    if not cls._param_names():
        out.append("  (none)")
    for param in cls._param_names():
        default = signature[param].default
        constraint = cls._constraints.get(param, _NO_CONSTRAINT)
        kind = "any value (checked when it is used)" if constraint is _NO_CONSTRAINT else allowed(constraint)
        flag = f"; or {_FLAG_PARAMS[param]}" if param in _FLAG_PARAMS else ""
        shown = "required" if default is inspect.Parameter.empty else f"default {default!r}"
        out.append(f"  {param}: {kind}; {shown}{flag}")
        text = comments.get(param) or _COMMON_DOCS.get(param)
        if text:
            out.append(textwrap.fill(text, 100, initial_indent="      ", subsequent_indent="      "))
    if "slices" in cls._param_names():
        from probekit.selection.slices.docs import EXAMPLES, GRAMMAR

        out += ["", "slices (--slice SPEC, repeatable, or --param slices=JSON):",
                textwrap.indent(GRAMMAR.rstrip(), "  "), "",
                "  examples (files named must exist):",
                *(f"    --slice {shlex.quote(e)}" for e in EXAMPLES), "",
                f"  Full reference, each form run on builtin:toy-text: {_SLICES_DOC} in the probekit repository."]
    examples = [ln for ln in SELECT_EPILOG.splitlines() if f"--strategy {name} " in ln + " "]
    if examples:
        out += ["", "examples:", *examples]
    return "\n".join(out) + "\n"


_NO_CONSTRAINT = object()


def _long_doc(cls, module) -> str:
    """The class docstring beyond its first line, else the module's (one strategy per module)."""
    import inspect

    own = (inspect.getdoc(cls) or "").strip()
    rest = "\n".join(own.splitlines()[1:]).strip()
    if rest:
        return rest
    mod = inspect.cleandoc(getattr(module, "__doc__", None) or "")
    lines = mod.splitlines()
    if lines and own and lines[0].rstrip(".") == own.splitlines()[0].rstrip("."):
        lines = lines[1:]  # the same summary line as the class
    return "\n".join(lines).strip()


def _comments(cls) -> dict[str, str]:
    """Each constructor parameter's comment in the source: on its ``self.NAME = NAME`` line or the
    comment lines just above it, else on its line of the signature (nanoGPT's habit: comments say
    why a default is what it is)."""
    import inspect
    import io
    import re
    import textwrap
    import tokenize

    try:
        source = textwrap.dedent(inspect.getsource(cls.__init__))
    except (OSError, TypeError):
        return {}
    comment: dict[int, str] = {}
    code: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comment[tok.start[0]] = tok.string.lstrip("#").strip()
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                  tokenize.ENDMARKER):
                code.add(tok.start[0])
    except (tokenize.TokenError, SyntaxError):
        return {}
    lines = source.splitlines()
    found: dict[str, str] = {}
    for name in cls._param_names():
        assign = re.compile(rf"^\s*self\.{re.escape(name)}\s*=")
        declared = re.compile(rf"^\s*(def\s+__init__\s*\(.*)?\b{re.escape(name)}\s*[:=,)]")
        for pattern in (assign, declared):
            for number, line in enumerate(lines, start=1):
                if not pattern.search(line):
                    continue
                above, k = [], number - 1
                while pattern is assign and k in comment and k not in code:
                    above.insert(0, comment[k])
                    k -= 1
                parts = above + ([comment[number]] if number in comment else [])
                if parts:
                    found[name] = " ".join(parts)
                break
            if name in found:
                break
    return found
