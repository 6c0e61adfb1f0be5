"""pytest plugin for exchangelib's suite: its ``Configuration(server=...)`` always means
``https://SERVER/EWS/Exchange.asmx``, the EWS sandbox is plain HTTP on loopback.

Loaded with ``-p plain_http`` by run.py; ``EXCHANGELIB_SUITE_ENDPOINT`` is the sandbox's
endpoint, and a configuration naming its ``host:port`` as server is pointed there instead.
"""

import os
from urllib.parse import urlsplit

from exchangelib.configuration import Configuration

ENDPOINT = os.environ["EXCHANGELIB_SUITE_ENDPOINT"]
SERVER = urlsplit(ENDPOINT).netloc
_original_init = Configuration.__init__


def _init(self: Configuration, *args: object, **kwargs: object) -> None:
    if kwargs.get("server") == SERVER:
        del kwargs["server"]
        kwargs["service_endpoint"] = ENDPOINT
    _original_init(self, *args, **kwargs)


Configuration.__init__ = _init  # type: ignore[method-assign]
