"""The staff console's routes under `/admin`, grouped by who may use them. The guards are set on
the groups, so a route cannot be added without one: `login` is open to anyone; the rest need a
signed-in account (`require_staff`), and the owner's part the owner (`require_owner`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from khqrpay.web.admin import dashboard, decisions, login, orders, products, users, webhooks
from khqrpay.web.admin.access import require_owner, require_staff

# Staff: orders (see them, Verify Instantly, Check Payment Status, Mark as Paid).
staff_routes = APIRouter(dependencies=[Depends(require_staff)])
staff_routes.include_router(dashboard.router)
staff_routes.include_router(orders.router)

# The owner: also products and stock, cancellations, review decisions and refunds, accounts,
# webhooks and Telegram alerts.
owner_routes = APIRouter(dependencies=[Depends(require_owner)])
owner_routes.include_router(decisions.router)
owner_routes.include_router(products.router)
owner_routes.include_router(users.router)
owner_routes.include_router(webhooks.router)

router = APIRouter(include_in_schema=False)
router.include_router(login.router)
router.include_router(staff_routes)
router.include_router(owner_routes)
