"""``l2sync sandbox``: run every sandbox service in the foreground until Ctrl-C or SIGTERM.

Prints ``NAME URL`` per service, ``ca PATH`` (the certificate to trust for the TLS services),
then ``ready``; notices (schema validation on or off) go to stderr.
"""

import argparse
import signal
import sys
import threading
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``l2sync sandbox``."""
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    p.add_argument("--port-base", type=int, default=0,
                   help="first port (services get consecutive ports); 0 picks free ports")
    p.add_argument("--latency-ms", type=int, default=0, help="delay added to every request")
    p.add_argument("--state", type=Path, default=None,
                   help="folder keeping data and certificates between starts (default: memory)")
    p.add_argument("--only", action="append", default=None,
                   help="start only this service (repeatable): token, ews, graph, dataverse")


def run(args: argparse.Namespace) -> int:
    """Start the services, print where they are, wait for a stop signal."""
    from l2sync_dagster.sandbox.server import start_sandbox

    stop = threading.Event()
    # SIGINT may be ignored when started in the background by a shell; restore both handlers
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    running = start_sandbox(args.host, args.port_base, args.latency_ms, args.state, args.only)
    try:
        for service in running.services.values():
            note = service.notice()
            if note:
                print(note, file=sys.stderr, flush=True)
        for name, url in running.urls.items():
            print(f"{name} {url}", flush=True)
        print(f"ca {running.ca_path}", flush=True)
        print("ready", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
    return 0
