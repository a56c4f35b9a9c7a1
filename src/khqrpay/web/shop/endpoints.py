"""Endpoints of this area: the catalogue, cart and checkout; the payment page; My orders. Pages,
not API: none of them is in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter

from khqrpay.web.shop import catalogue, my_orders, payment

router = APIRouter(include_in_schema=False)
router.include_router(catalogue.router)
router.include_router(payment.router)
router.include_router(my_orders.router)
