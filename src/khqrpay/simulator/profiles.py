"""How the simulated Bakong shapes its answers: as production answers them, or as the SIT service.

`production` (the default) is what clients of the live API report: `"Success"` messages, a
whole-dollar USD amount as a JSON integer, whole-second timestamps acknowledged 1–2 s after
creation, `instructionRef` null, the tracking and receiver-bank keys often left out, md5-list
items only SUCCESS / NOT_FOUND / STATIC_QR (a failed transfer lists as NOT_FOUND), payers shown
as their banks' settlement accounts, an expired token refused with HTTP 403, and account checks
that say whether the account can receive. `sit` keeps the shapes of the reference document.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from khqrpay.simulator.protocol import TRANSACTION_FOUND

# Banks' settlement accounts, as `fromAccountId` shows them in production answers.
SETTLEMENT_ACCOUNTS = (
    "abaakhppxxx@abaa",
    "acledakhppxxx@acld",
    "wingkhppxxx@wing",
    "cadikhppxxx@cadi",
    "prbbkhppxxx@prbb",
    "sbplkhppxxx@sbpl",
)
# People, as the reference's SIT samples show some payers.
PEOPLE = ("sokha_chan@aclb", "dara_vann@abaa", "srey_mom@wing")
# The keys a production answer often leaves out.
OFTEN_ABSENT_KEYS = frozenset({"trackingStatus", "receiverBank", "receiverBankAccount"})


class SimulatorProfile(enum.StrEnum):
    PRODUCTION = "production"
    SIT = "sit"


@dataclass(frozen=True, slots=True)
class WireShape:
    """Everything that differs between the profiles."""

    success_message: str
    whole_usd_as_integer: bool
    whole_second_times: bool
    ack_delay_ms: tuple[int, int]
    instruction_refs: bool
    # Share of transactions whose answers leave OFTEN_ABSENT_KEYS out.
    absent_keys_share: float
    list_shows_failed: bool
    payer_accounts: tuple[str, ...]
    expired_token_status: int
    account_details: bool


SHAPES: dict[SimulatorProfile, WireShape] = {
    SimulatorProfile.PRODUCTION: WireShape(
        success_message="Success",
        whole_usd_as_integer=True,
        whole_second_times=True,
        ack_delay_ms=(1000, 2000),
        instruction_refs=False,
        absent_keys_share=0.7,
        list_shows_failed=False,
        payer_accounts=SETTLEMENT_ACCOUNTS,
        expired_token_status=403,
        account_details=True,
    ),
    SimulatorProfile.SIT: WireShape(
        success_message=TRANSACTION_FOUND,
        whole_usd_as_integer=False,
        whole_second_times=False,
        ack_delay_ms=(300, 3000),
        instruction_refs=True,
        absent_keys_share=0.0,
        list_shows_failed=True,
        payer_accounts=SETTLEMENT_ACCOUNTS[:4] + PEOPLE,
        expired_token_status=401,
        account_details=False,
    ),
}
