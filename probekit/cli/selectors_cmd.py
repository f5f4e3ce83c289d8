"""``probekit selectors``: the registered strategies, their descriptions and parameters."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "selectors",
        help="list the registered selection strategies",
        description="List the selection strategies registered through the 'probekit.selectors' "
        "entry-point group (built-in and third-party), with one-line descriptions and parameters.",
        epilog="example:\n  probekit selectors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(run=run)


def _describe(param) -> str:
    return param.name if param.default is param.empty else f"{param.name}={param.default!r}"


def run(args: argparse.Namespace) -> int:
    import inspect

    from probekit.errors import ProbekitError
    from probekit.registry import SELECTORS

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
    return 0
