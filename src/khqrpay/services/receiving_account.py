"""Can the shop's receiving account take payments? Asked of Bakong before anything waits for them.

The worker asks at start-up and refuses to run for an account Bakong says cannot receive (not
found, invalid, `canReceive` false, frozen, closed): its orders could never be paid. When Bakong
cannot be asked (down, firewall, token), the answer is "unchecked": that is no reason to stop
checking payments. `khqrpay doctor` shows the same result.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Protocol

from khqrpay.bakong.errors import BakongError, BakongInputError
from khqrpay.bakong.outcomes import AccountStatus


class AccountChecker(Protocol):
    """What this check asks of Bakong (`BakongClient` is one; a fake in tests may be another)."""

    async def check_account(self, account_id: str) -> AccountStatus: ...


class AccountVerdict(enum.StrEnum):
    READY = "ready"
    CANNOT_RECEIVE = "cannot_receive"
    UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class ReceivingAccountCheck:
    """The verdict on `account_id`, why (`reasons`), what else is worth a look (`remarks`), and
    Bakong's answer when there was one."""

    account_id: str
    verdict: AccountVerdict
    reasons: tuple[str, ...] = ()
    remarks: tuple[str, ...] = ()
    status: AccountStatus | None = None

    @property
    def can_receive(self) -> bool:
        return self.verdict is not AccountVerdict.CANNOT_RECEIVE

    def describe(self) -> str:
        """One line for a log or a terminal."""
        match self.verdict:
            case AccountVerdict.READY:
                text = f"{self.account_id} can receive payments"
            case AccountVerdict.CANNOT_RECEIVE:
                text = f"{self.account_id} cannot receive payments: {'; '.join(self.reasons)}"
            case AccountVerdict.UNCHECKED:
                text = f"{self.account_id} could not be checked: {'; '.join(self.reasons)}"
        return text + "".join(f" ({remark})" for remark in self.remarks)


async def check_receiving_account(
    client: AccountChecker, account_id: str, *, within_s: float
) -> ReceivingAccountCheck:
    """Ask Bakong about `account_id` (the settings' `merchant_account`), waiting at most
    `within_s` in all (retries included); never raises for an answer Bakong could not give."""
    try:
        async with asyncio.timeout(within_s):
            status = await client.check_account(account_id)
    except BakongInputError as exc:
        return ReceivingAccountCheck(account_id, AccountVerdict.CANNOT_RECEIVE, (str(exc),))
    except BakongError as exc:
        return ReceivingAccountCheck(account_id, AccountVerdict.UNCHECKED, (str(exc),))
    except TimeoutError:
        reason = f"Bakong gave no answer within {within_s:g}s"
        return ReceivingAccountCheck(account_id, AccountVerdict.UNCHECKED, (reason,))
    problems = status.receiving_problems()
    verdict = AccountVerdict.CANNOT_RECEIVE if problems else AccountVerdict.READY
    return ReceivingAccountCheck(account_id, verdict, problems, status.remarks(), status)
