"""``python -m trio_http``: see :mod:`trio_http._cli`."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
