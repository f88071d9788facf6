"""A real moto server on 127.0.0.1 for the AWS tests, with dummy credentials (nothing leaves this machine)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
       "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/nonexistent",
       "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def moto_endpoint() -> Iterator[str]:
    """Start the server on a free port; yield its URL; stop it."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in ENV.items():
            mp.setenv(k, v)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            _, port = server.get_host_and_port()
            url = f"http://127.0.0.1:{port}"
            # moto keeps its backends per process, not per server: start from an empty AWS, whatever earlier tests
            # seeded (a made-up PV-GRUB 1.10 AKI, instances, buckets...).
            reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
            urllib.request.urlopen(reset, timeout=30).close()  # noqa: S310 - http://127.0.0.1 only
            yield url
        finally:
            server.stop()
