"""How a simulated Bakong is set up."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from khqrpay.simulator.faults import FaultConfig
from khqrpay.simulator.profiles import SimulatorProfile


class SimulatorConfig(BaseModel):
    """`token`: the one bearer token accepted from the start (None: the simulator makes a
    JWT-shaped one). `registered_emails`: who may renew a token. `known_accounts`: Bakong accounts
    the account check finds (payees and payers it sees are added); `frozen_accounts`: those it says
    cannot receive (production profile). `seed`: makes hashes, references, faults and customers'
    delays repeatable. `acceleration`: a customer's drawn delay of D seconds happens after
    D / acceleration real seconds. `profile`: answers shaped as production (default) or SIT
    answers them (`khqrpay.simulator.profiles`). `journal`: a file keeping the transactions
    between runs (None: in memory only). `app_links`: deep links open this simulator's
    banking-app page on the code instead of Bakong's short links (the demo's shop)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: SecretStr | None = None
    registered_emails: frozenset[str] = frozenset({"merchant@example.com"})
    known_accounts: frozenset[str] = frozenset()
    frozen_accounts: frozenset[str] = frozenset()
    faults: FaultConfig = FaultConfig()
    seed: int | None = None
    acceleration: float = Field(default=1.0, gt=0)
    profile: SimulatorProfile = SimulatorProfile.PRODUCTION
    journal: Path | None = None
    app_links: bool = False
