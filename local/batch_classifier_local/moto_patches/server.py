"""moto's server: the dispatch of each request to its service, without listing moto's package folder each time."""

from __future__ import annotations

from collections.abc import Iterable

from .common import replace, require


def patch_dispatch() -> None:
    """moto's server finds the service of every request with ``backends.list_of_moto_modules()``, which lists moto's
    package folder and checks each of its entries on disk (close to 200 system calls a request, under the server's
    lock, each letting the interpreter switch threads). The folder does not change while the runtime runs: it is
    listed once, and the list is given again for every request."""
    from moto import backends  # noqa: PLC0415

    listed = tuple(require(backends, "list_of_moto_modules", ())())

    def list_of_moto_modules() -> Iterable[str]:
        return listed

    replace(backends, "list_of_moto_modules", list_of_moto_modules)
