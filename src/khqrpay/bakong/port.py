"""The port the services depend on: what they ask of Bakong, as a Protocol.

`BakongClient` (httpx, the real API or the simulator over HTTP) implements it; fast service tests
may use a fake. Answers and errors are the typed values of `khqrpay.bakong.outcomes` and
`khqrpay.bakong.errors`: no error is ever a "not paid".
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol

from khqrpay.bakong.deeplink import DeeplinkSource
from khqrpay.bakong.errors import BakongError
from khqrpay.bakong.outcomes import AccountStatus, CheckResult
from khqrpay.money import Currency


class BakongPort(Protocol):
    async def check_md5_list(self, md5s: Iterable[str]) -> dict[str, CheckResult | BakongError]:
        """Each md5's answer (lower-case keys), or the error for that md5; raises BakongError
        when the whole call failed."""
        ...

    async def check_hash(self, tx_hash: str) -> CheckResult: ...

    def list_fallback_until_ms(self) -> int | None:
        """Until when this client checks md5s one by one (the list was refused); None: it uses
        the list."""
        ...

    def list_refused_elsewhere(self, until_ms: int) -> None:
        """Another process found the md5 list refused until `until_ms`: check one by one until
        then, without spending a call on the list to learn it again."""
        ...

    async def check_short_hash(
        self, short_hash: str, amount: Decimal, currency: Currency
    ) -> CheckResult: ...

    async def check_account(self, account_id: str) -> AccountStatus: ...

    async def generate_deeplink(self, qr: str, source_info: DeeplinkSource | None = None) -> str:
        """A short link that opens the customer's banking app on this KHQR."""
        ...
