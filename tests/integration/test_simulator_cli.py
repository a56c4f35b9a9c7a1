"""`khqrpay simulator` serves the Bakong API on the port and token it is given."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

_RUN_CLI = "from khqrpay.cli.main import app; app()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_command_serves_with_the_given_token_and_faults() -> None:
    port = _free_port()
    command = [sys.executable, "-c", _RUN_CLI, "simulator", "--port", str(port)]
    command += ["--token", "cli-token", "--seed", "3", "--md5-list-blocked"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                faults = httpx.get(f"{url}/_sim/faults").json()["faults"]
                break
            except httpx.ConnectError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        assert faults["md5_list_blocked"] is True
        auth = {"Authorization": "Bearer cli-token"}
        answer = httpx.post(
            f"{url}/v1/check_transaction_by_md5", json={"md5": "0" * 32}, headers=auth
        )
        assert answer.json()["errorCode"] == 1
        blocked = httpx.post(
            f"{url}/v1/check_transaction_by_md5_list", json=["0" * 32], headers=auth
        )
        assert blocked.status_code == 403
        account = httpx.post(
            f"{url}/v1/check_bakong_account", json={"accountId": "khqrpay_demo@devb"}
        )
        assert account.json()["responseCode"] == 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_fault_fractions_over_one_are_refused() -> None:
    command = [sys.executable, "-c", _RUN_CLI, "simulator", "--token", "t"]
    command += ["--server-error", "0.6", "--blocked", "0.6"]
    wide = {**os.environ, "COLUMNS": "300"}  # so the error box does not wrap the message
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=30, check=False, env=wide
    )
    assert result.returncode == 2
    assert "add up to more than 1" in result.stderr


def test_a_port_in_use_is_one_error_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-c", _RUN_CLI, "simulator", "--port", str(port)]
        result = subprocess.run(
            [*command, "--token", "t"], capture_output=True, text=True, timeout=60, check=False
        )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "error: Address already in use\n"
