"""The `khqrpay worker` process: the verifier, the expiry sweep and the outbox relay."""

from khqrpay.worker.runtime import Worker, new_worker_id, run_worker

__all__ = ["Worker", "new_worker_id", "run_worker"]
