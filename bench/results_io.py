"""What every benchmark does with its result: stamp the machine and command, print, save."""

import json
import os
import platform
from pathlib import Path
from typing import Any


def save_result(result: dict[str, Any], out: str | Path, command: str) -> None:
    """Add machine and command to ``result``, print it as JSON and write it to ``out``."""
    result["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
                         f"{platform.python_version()}")
    result["command"] = command
    text = json.dumps(result, indent=2)
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text + "\n")
