"""A faithful Bakong Open API simulator, with a control API for payments, customers and faults.

It serves the paths, bodies, envelopes, messages and HTTP statuses of
`shared/reference/bakong-api.md`. Where the reference is silent, it decides as follows:

- Validation: a JSON body of the wrong shape (a field missing, of the wrong type or too long, a
  list that is empty, not a bare array, or longer than 50) answers HTTP 200 with errorCode 5, the
  only validation code the service has; a body that is not JSON at all answers HTTP 400 with the
  same envelope. The token is checked before the body.
- A request without a User-Agent gets the firewall's 403 HTML page, as the service's does.
- The account check and the deep link need no token (the reference: "may work without"). An
  account id is invalid (errorCode 12) unless it looks like `name@bank` in lower case, at most
  32 characters; it exists once configured or seen as a payee or payer. A deep link for a string
  that does not decode as a KHQR answers errorCode 5.
- A QR paid twice (a banking app allows it): the md5 check answers the first successful payment,
  every payment is found by its hash. A failed transfer shows (errorCode 3) only while no
  attempt on that QR has succeeded.
- A static QR answers errorCode 2 on md5 checks once the simulator has seen it (through a payment,
  a customer or the banking page); a QR it never saw is simply not found.
- `delay_s` on a payment is Bakong's lag: `createdDateMs` is when the payer pressed Pay (the QR is
  checked then), and the transaction can be found `delay_s` later.
- Faults apply to `/v1/` only, at most one per request from one seeded draw; the control API under
  `/_sim/` (no token, JSON) is never faulted. `GET /_sim/requests` counts the `/v1/` requests by
  path, and the faults they met.
"""

from khqrpay.simulator.app import Simulator, create_app
from khqrpay.simulator.config import SimulatorConfig
from khqrpay.simulator.faults import FaultConfig
from khqrpay.simulator.server import RunningSimulator, run_simulator, serve

__all__ = [
    "FaultConfig",
    "RunningSimulator",
    "Simulator",
    "SimulatorConfig",
    "create_app",
    "run_simulator",
    "serve",
]
