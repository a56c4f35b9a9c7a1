"""The `khqrpay worker` process: the verifier, the expiry sweep, the outbox relay, and sending
webhooks and Telegram alerts."""

from khqrpay.worker.runtime import Worker, new_worker_id, run_worker

__all__ = ["Worker", "new_worker_id", "run_worker"]
