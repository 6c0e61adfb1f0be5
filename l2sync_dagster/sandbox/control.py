"""A client for the sandbox control API (``/_sandbox/...``), for tests and benchmarks."""

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class SandboxControl:
    """Control one sandbox service at ``url`` (its base URL as ``l2sync sandbox`` printed it)."""

    def __init__(self, name: str, url: str, ca_path: Path | str | None = None) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self._ssl = ssl.create_default_context(cafile=str(ca_path)) if ca_path else None

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """Call ``/_sandbox/<path>`` and return the JSON answer; HTTP errors raise with body."""
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(f"{self.url}/_sandbox/{path.lstrip('/')}", data=data,
                                     method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60, context=self._ssl) as resp:  # noqa: S310
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{self.name} control {method} {path}: {exc.code} "
                               f"{exc.read().decode(errors='replace')}") from exc

    def stats(self) -> dict[str, Any]:
        """Requests per operation, throttled, dropped, invalid responses."""
        return self.request("GET", "stats")

    def reset_stats(self) -> None:
        """Zero the counters."""
        self.request("POST", "stats")

    def faults(self, **values: Any) -> dict[str, Any]:
        """Inject faults (see :class:`l2sync_dagster.sandbox.service.Faults`)."""
        return self.request("POST", "faults", values)

    def clear_faults(self) -> None:
        """No more faults."""
        self.request("DELETE", "faults")

    def reset(self) -> None:
        """Demo data back; counters and faults cleared."""
        self.request("POST", "reset")

    def call(self, method: str, subpath: str, payload: Any = None) -> Any:
        """A service-specific endpoint ``/_sandbox/<service>/<subpath>``."""
        return self.request(method, f"{self.name}/{subpath}", payload)
