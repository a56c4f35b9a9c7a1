"""Telegram alerts for the shop's people, in Khmer or English per chat.

An alert is written with the change it announces (`uow.outbox.add_event`, see
`khqrpay.orders.notices.alert_for`): a payment (order, amount, payer, time, a link to the order in
the staff console), an order that needs review (why), a refund flag (why), Bakong refusing the
token, the token expiring within the warning days (`warn_token_expiry`). The worker then writes
one message per chat in the settings, in that chat's language (`TelegramChannel.prepare`), and
sends them through the dispatcher: one at a time per chat and in order, retried with backoff, and
Telegram's flood control (429 `retry_after`) holding every send back as long as it asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from khqrpay.clock import ms_to_datetime
from khqrpay.db import Database, UnitOfWork
from khqrpay.db.repositories.deliveries import DeliveryQueue
from khqrpay.db.repositories.telegram import PendingAlert, SentAlert, TelegramMessage
from khqrpay.orders.events import BakongTokenExpiring
from khqrpay.orders.model import RecordedEvidence
from khqrpay.orders.notices import AlertKind, TokenStage, alert_for, token_stage
from khqrpay.outbound.port import AlertSender, SendOutcome
from khqrpay.services.dispatch import QueueChannel
from khqrpay.services.orders import read_order_details
from khqrpay.settings import TelegramChat

CAMBODIA = ZoneInfo("Asia/Phnom_Penh")
_DAY_MS = 86_400_000
# An alert the worker first sees later than this (Telegram was set up afterwards, the worker was
# stopped for long) is old news: no message is written for it.
STALE_AFTER_MS = _DAY_MS
EXPAND_BATCH = 100

# The messages, by language. Reasons come from the engine as they are (English).
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "payment": (
            "✅ Payment received\nOrder #{order_id} · {amount}\nPaid by: {payer}\nAt: {time}"
        ),
        "payer_unstated": "not stated by Bakong",
        "payer_staff": "marked paid by staff",
        "needs_review": "⚠️ Order #{order_id} needs review · {amount}\nWhy: {reason}",
        "refund_flag": "↩️ Order #{order_id}: money to refund · {amount}\nWhy: {reason}",
        "bakong_unauthorized": (
            "⛔ Bakong refused the API token: payments are not being checked.\n"
            "Renew the token (KHQRPAY_BAKONG_TOKEN) and restart the worker."
        ),
        "token_soon": (
            "⏳ The Bakong API token expires on {time}, in {days} days.\n"
            "Renew it before then, or payments stop being checked."
        ),
        "token_last_day": (
            "⏳ The Bakong API token expires on {time}, in less than a day.\n"
            "Renew it now, or payments stop being checked."
        ),
        "token_expired": (
            "⛔ The Bakong API token expired on {time}: payments are not being checked "
            "until it is renewed."
        ),
        "link": "Open: {url}",
    },
    "km": {
        "payment": (
            "✅ បានទទួលការទូទាត់\nការបញ្ជាទិញ #{order_id} · {amount}\n"
            "អ្នកបង់ប្រាក់៖ {payer}\nពេលវេលា៖ {time}"
        ),
        "payer_unstated": "បាគងមិនបានបញ្ជាក់",
        "payer_staff": "បុគ្គលិកបានកត់ត្រាថាបានបង់",
        "needs_review": "⚠️ ការបញ្ជាទិញ #{order_id} ត្រូវការពិនិត្យ · {amount}\nមូលហេតុ៖ {reason}",
        "refund_flag": ("↩️ ការបញ្ជាទិញ #{order_id}៖ មានប្រាក់ដែលត្រូវសងវិញ · {amount}\nមូលហេតុ៖ {reason}"),
        "bakong_unauthorized": (
            "⛔ បាគងបានបដិសេធ token API៖ ការទូទាត់មិនត្រូវបានពិនិត្យទេ។\n"
            "សូមបន្ត token (KHQRPAY_BAKONG_TOKEN) ហើយចាប់ផ្ដើម worker ឡើងវិញ។"
        ),
        "token_soon": (
            "⏳ token API របស់បាគងនឹងផុតកំណត់នៅ {time} ក្នុងរយៈពេល {days} ថ្ងៃទៀត។\n"
            "សូមបន្តវាមុនពេលនោះ បើមិនដូច្នេះទេ ការទូទាត់នឹងឈប់ត្រូវបានពិនិត្យ។"
        ),
        "token_last_day": (
            "⏳ token API របស់បាគងនឹងផុតកំណត់នៅ {time} តិចជាងមួយថ្ងៃទៀត។\n"
            "សូមបន្តវាឥឡូវនេះ បើមិនដូច្នេះទេ ការទូទាត់នឹងឈប់ត្រូវបានពិនិត្យ។"
        ),
        "token_expired": (
            "⛔ token API របស់បាគងបានផុតកំណត់នៅ {time}៖ ការទូទាត់មិនត្រូវបានពិនិត្យទេ រហូតដល់វាត្រូវបានបន្ត។"
        ),
        "link": "មើល៖ {url}",
    },
}
_TOKEN_TEXTS = {
    TokenStage.SOON: "token_soon",
    TokenStage.LAST_DAY: "token_last_day",
    TokenStage.EXPIRED: "token_expired",
}


def local_time(ms: int, language: str) -> str:
    """A time in Cambodia, written the way `language` writes it."""
    moment: datetime = ms_to_datetime(ms)
    return format_datetime(moment, "d MMM y, HH:mm", tzinfo=CAMBODIA, locale=language)


def order_link(public_url: str | None, order_id: int) -> str | None:
    """The order's page in the staff console, when the console's address is known."""
    return None if not public_url else f"{public_url.rstrip('/')}/admin/orders/{order_id}"


def render_alert(
    uow: UnitOfWork, alert: PendingAlert, *, language: str, public_url: str | None
) -> str:
    """The alert's message in `language` (`km` or `en`), from its event and the order now."""
    texts = TEXTS[language]
    payload = alert.event_payload
    if alert.kind is AlertKind.BAKONG_UNAUTHORIZED:
        return texts["bakong_unauthorized"]
    if alert.kind is AlertKind.TOKEN_EXPIRING:
        event = BakongTokenExpiring.from_payload(payload)
        stage = token_stage(expires_at_ms=event.expires_at_ms, now_ms=event.at_ms)
        days = max(1, (event.expires_at_ms - event.at_ms) // _DAY_MS)
        return texts[_TOKEN_TEXTS[stage]].format(
            time=local_time(event.expires_at_ms, language), days=days
        )
    assert alert.order_id is not None  # the other kinds are about an order
    details = read_order_details(uow, alert.order_id)
    facts = {
        "order_id": alert.order_id,
        "amount": details.order.total.display(),
        "reason": payload.get("reason") or "",
    }
    if alert.kind is AlertKind.PAYMENT:
        evidence = _payment_of(details.evidence, payload.get("short_hash"))
        if evidence is None:
            payer = texts["payer_staff"]
        else:
            payer = evidence.evidence.from_account or texts["payer_unstated"]
        paid_ms = int(payload["at_ms"]) if evidence is None else evidence.evidence.paid_ms
        facts |= {"payer": payer, "time": local_time(paid_ms, language)}
    text = texts[alert.kind.value].format(**facts)
    link = order_link(public_url, alert.order_id)
    return text if link is None else f"{text}\n{texts['link'].format(url=link)}"


def _payment_of(
    evidence: Sequence[RecordedEvidence], short_hash: object
) -> RecordedEvidence | None:
    """The Bakong payment the event names, else the order's latest one (staff accepting a
    payment in review names none), else None (staff marked it paid without one)."""
    named = [r for r in evidence if short_hash is not None and r.evidence.short_hash == short_hash]
    candidates = named or list(evidence)
    return candidates[-1] if candidates else None


def warn_token_expiry(
    database: Database, *, expires_at_ms: int | None, now_ms: int, warn_ms: int, worker: str
) -> bool:
    """Announce that the Bakong token expires within `warn_ms` (or has expired): once per token
    and stage (soon, last day, expired), whichever worker notices first. Whether it did."""
    if expires_at_ms is None or expires_at_ms - now_ms > warn_ms:
        return False
    event = BakongTokenExpiring(at_ms=now_ms, expires_at_ms=expires_at_ms, worker=worker)
    alert = alert_for(event)
    assert alert is not None
    assert alert.dedupe_key is not None
    with database.write() as uow:
        if uow.telegram.has_alert(alert.dedupe_key):
            return False
        uow.outbox.add_event(event, now_ms=now_ms)
    return True


def recent_alerts(database: Database, *, limit: int = 50) -> list[SentAlert]:
    """The latest messages to chats, newest first, with the alerts they tell of."""
    with database.read() as uow:
        return uow.telegram.recent(limit)


def masked_chat_id(chat_id: str) -> str:
    """Enough of a chat's id to tell chats apart, not to write to one: its sign or `@` and its
    last 4 characters (3 of a short one)."""
    lead = chat_id[0] if chat_id[0] in "-@" else ""
    shown = 4 if len(chat_id) - len(lead) > 6 else 3
    return f"{lead}•••{chat_id[-shown:]}"


@dataclass(frozen=True, slots=True)
class TelegramJob:
    message: TelegramMessage

    @property
    def id(self) -> int:
        return self.message.id

    @property
    def target(self) -> str:
        return self.message.chat_id


@dataclass(kw_only=True)
class TelegramChannel(QueueChannel[TelegramJob]):
    """Telegram messages for the dispatcher: written per chat, sent one at a time per chat."""

    sender: AlertSender
    chats: Sequence[TelegramChat]
    public_url: str | None
    name: str = "telegram"
    # Telegram asks for a message a second in a chat at most: one at a time is enough.
    per_target: int = 1
    pause_all_on_retry_after: bool = True

    def queue(self, uow: UnitOfWork) -> DeliveryQueue:
        return uow.telegram.queue

    def prepare(self, now_ms: int) -> None:
        """Write the messages of alerts not seen yet, one per chat in its language."""
        with self.database.read() as uow:
            if not uow.telegram.has_unexpanded():
                return
        with self.database.write() as uow:
            for alert in uow.telegram.unexpanded(EXPAND_BATCH):
                fresh = now_ms - alert.created_ms <= STALE_AFTER_MS
                messages = [
                    (
                        chat.id,
                        chat.language,
                        render_alert(
                            uow, alert, language=chat.language, public_url=self.public_url
                        ),
                    )
                    for chat in (self.chats if fresh else ())
                ]
                uow.telegram.expand(alert.id, messages, now_ms=now_ms)

    def load(self, uow: UnitOfWork, row_ids: Sequence[int]) -> list[TelegramJob]:
        return [TelegramJob(message) for message in uow.telegram.messages(row_ids)]

    async def send(self, job: TelegramJob) -> SendOutcome:
        return await self.sender.send(job.message.chat_id, job.message.text)

    def attempts_so_far(self, job: TelegramJob) -> tuple[int, int]:
        return job.message.state.attempts, job.message.state.started_ms
