"""Starting (or joining) the Ray cluster that trials run on: one way for ``search`` and ``finalize``.

:func:`start_ray` returns whether it started Ray here (then the caller shuts it down). An explicit
``--address HOST:PORT`` is probed first (:func:`check_address`: ``ray.init`` would retry an
unreachable head for minutes) and gets the token that ``ray start --head`` saved
(:func:`token_auth_for`); any failure to connect is one line (a :class:`UserError`).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from .errors import UserError

#: seconds to wait for a Ray head given by --address before giving up with one line
ADDRESS_TIMEOUT_S = 5.0


def check_address(address: str, timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """One line (UserError) unless something accepts connections at ``--address`` HOST:PORT
    (or ``ray://HOST:PORT``) within ``timeout_s``; ``auto`` and addresses without a port are
    left to Ray."""
    target = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise UserError(f"cannot reach the Ray cluster at {address} ({reason}; waited at most {timeout_s:g} s): start it "
                        "with `ray start --head`, or drop --address to run on this machine") from None


def token_auth_for(address: str) -> None:
    """Ray (2.5x) protects a cluster started with ``ray start --head`` with a token it saves in
    ``~/.ray/auth_token``, but uses it only for ``address="auto"``: an explicit ``HOST:PORT`` is
    refused ("InvalidAuthToken") unless ``RAY_AUTH_MODE=token``. Turn it on when a token is
    there and the user has not chosen a mode. Must run before Ray is imported (it reads the mode once)."""
    if address in ("auto", "local") or "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def start_ray(address: str | None) -> bool:
    """Join the cluster at ``address`` (None: start a local Ray with this machine's cores, never a
    stray cluster found on it). Returns True when Ray was started here, False when it was running."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    if address:
        token_auth_for(address)
    import ray

    if ray.is_initialized():
        return False
    if address:
        check_address(address)
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        else:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot reach the Ray cluster {address or '(local)'}: {str(exc).splitlines()[0]}") from None
    return True


__all__ = ["ADDRESS_TIMEOUT_S", "check_address", "start_ray", "token_auth_for"]
