"""``python -m probekit`` is the same as the ``probekit`` console script."""
from probekit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
