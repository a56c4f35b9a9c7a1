"""Adapters for what khqrpay sends out: webhook deliveries over HTTP (signed, Standard Webhooks,
guarded against server-side request forgery) and Telegram messages through the Bot API.

Services use them through `khqrpay.outbound.port`; the composition root builds them.
"""
