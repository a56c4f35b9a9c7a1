"""`khqrpay orders verify|check|mark-paid`: JSON out, refusals as a message and exit code 2."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import typer
from typer.testing import CliRunner

from khqrpay.cli.order_actions import register
from khqrpay.simulator.server import RunningSimulator

if TYPE_CHECKING:
    from conftest import PaidOrders


def _orders_app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_verify_check_and_mark_paid_commands(
    paid_orders: PaidOrders, worker_env: dict[str, str], live_simulator: RunningSimulator
) -> None:
    _product_id, (first, second, third) = paid_orders(3)
    runner = CliRunner()
    app = _orders_app()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args), env=worker_env)
        return result.exit_code, result.stdout, result.stderr

    code, out, _ = run("check", str(first.order.id))
    assert code == 0
    status = json.loads(out)
    assert status["status"] == "PENDING"
    assert [qr["bakong"] for qr in status["qrs"]] == ["paid"]

    code, out, _ = run("verify", str(first.order.id), "--staff", "dara")
    assert code == 0
    verified = json.loads(out)
    assert (verified["previous_status"], verified["status"]) == ("PENDING", "COMPLETED")
    assert verified["checked"][0]["completion"]["action"] == "COMPLETE"

    paid = httpx.get(f"{live_simulator.url}/_sim/transactions").json()["transactions"]
    second_hash = next(t["transaction"]["hash"] for t in paid if t["md5"] == second.payment.md5)
    code, out, _ = run(
        "mark-paid", str(second.order.id), "--reason", "receipt shown", "--hash", second_hash[:8]
    )
    assert code == 0
    marked = json.loads(out)
    assert (marked["action"], marked["status"]) == ("COMPLETE", "COMPLETED")
    assert marked["evidence"]["bakong_hash"] == second_hash

    code, out, err = run("mark-paid", str(third.order.id), "--reason", "x", "--hash", "ab" * 32)
    assert (code, out) == (2, "")
    assert "error: Bakong has no payment abababab" in err
    code, _, err = run("mark-paid", str(third.order.id))  # --reason is required
    assert code == 2
    assert "--reason" in err
    code, _, err = run("verify", "99999")
    assert code == 2
    assert "order 99999 not found" in err
