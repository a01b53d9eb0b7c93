"""The launchers' shared parts (devstack/): exit wording, ports, tokens, probes, a server
process and its readiness wait, against real sockets and processes."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import jwt
import pytest

from devstack.exits import describe_exit
from devstack.ports import free_port, port_is_free
from devstack.probes import grpc_serving, has_tickers, http_ok, redis_loaded, redis_silence, tcp_listening
from devstack.process import ServerProcess, StackError, wait_ready
from devstack.tokens import user_token


def test_exits_are_worded_as_what_happened() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGTERM) == "killed by SIGTERM"
    assert describe_exit(-200) == "killed by signal 200"
    assert describe_exit(None) == "still running"


def test_a_taken_port_is_not_free() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        assert tcp_listening(port)
    assert port_is_free("localhost", free_port())


def test_a_user_token_names_the_user_and_lasts_its_lifetime() -> None:
    claims = jwt.decode(user_token("s" * 32, "alice", 60, now=1_000), "s" * 32,
                        algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "alice", "iat": 1_000, "exp": 1_060}


def test_probes_of_nothing_answer_false_without_raising() -> None:
    port = free_port()
    assert not tcp_listening(port)
    assert not http_ok(f"http://127.0.0.1:{port}/readyz")
    assert not redis_loaded(f"redis://127.0.0.1:{port}/0")
    assert not grpc_serving(f"127.0.0.1:{port}")
    assert not has_tickers(f"127.0.0.1:{port}")
    assert (redis_silence(f"redis://127.0.0.1:{port}/0") or "").startswith("Connection refused: ")


def test_a_redis_that_answers_is_not_silent(redis_url: str) -> None:
    assert redis_loaded(redis_url)
    assert redis_silence(redis_url) is None


def test_a_server_that_dies_while_starting_says_how(tmp_path: Path) -> None:
    server = ServerProcess("sleeper", [sys.executable, "-c", "import os, signal; print('hello', flush=True);"
                                       " os.kill(os.getpid(), signal.SIGKILL)"], tmp_path)
    try:
        with pytest.raises(StackError, match=r"sleeper killed by SIGKILL: hello"):
            server.wait_ready(lambda: False, 30)
    finally:
        server.stop()


def test_a_server_that_never_gets_ready_times_out_with_its_log(tmp_path: Path) -> None:
    server = ServerProcess("idler", [sys.executable, "-c", "import time; print('waiting', flush=True);"
                                     " time.sleep(60)"], tmp_path)
    try:
        wait_ready("idler's log", lambda: "waiting" in server.log_path.read_text(), 30, server)
        with pytest.raises(StackError, match=r"idler not ready after 0.2s: waiting"):
            server.wait_ready(lambda: False, 0.2)
    finally:
        server.stop()
    assert server.proc.returncode == -signal.SIGTERM
