"""`khqrpay qr ...`: encode, decode, verify and draw KHQR strings.

A contract for scripts: invalid input prints the reason on stderr and exits 2; `verify` prints
`valid` (exit 0) or the reason (exit 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from khqrpay.cli.common import QrText, fail
from khqrpay.clock import SystemClock
from khqrpay.khqr import KHQRError, KHQRInput, decode, encode, verify
from khqrpay.money import Currency, Money, MoneyError

app = typer.Typer(help="Encode, decode, verify and draw KHQR strings.", no_args_is_help=True)

NOT_VALID = 1

_Text = Annotated[str | None, typer.Option()]


@app.command("encode")
def encode_command(
    *,
    account: Annotated[str, typer.Option(help="Bakong account id, name@bank.")],
    name: Annotated[str, typer.Option(help="Merchant name (at most 25 characters).")],
    city: Annotated[str, typer.Option(help="Merchant city.")] = "Phnom Penh",
    currency: Annotated[str, typer.Option(help="KHR or USD.")] = "KHR",
    amount: Annotated[
        str | None, typer.Option(help="Exact amount (4000, 1.50); makes the QR dynamic.")
    ] = None,
    merchant_id: Annotated[
        str | None, typer.Option(help="Makes a merchant QR; needs --acquiring-bank.")
    ] = None,
    acquiring_bank: _Text = None,
    account_information: _Text = None,
    mcc: Annotated[str, typer.Option(help="Merchant category code, 4 digits.")] = "5999",
    bill_number: _Text = None,
    mobile_number: _Text = None,
    store_label: _Text = None,
    terminal_label: _Text = None,
    purpose: _Text = None,
    language_preference: Annotated[
        str | None, typer.Option(help="Two-letter code such as km; needs --name-alt.")
    ] = None,
    name_alt: _Text = None,
    city_alt: _Text = None,
    upi_merchant_account: _Text = None,
    expires_at_ms: Annotated[
        int | None, typer.Option(help="Expiry, epoch ms; required with --amount.")
    ] = None,
    now_ms: Annotated[
        int | None, typer.Option(help="Creation time, epoch ms (default: now).")
    ] = None,
) -> None:
    """Print the KHQR string for the given fields."""
    try:
        chosen_currency = Currency.parse(currency)
        exact_amount = None if amount is None else Money.parse(amount, chosen_currency).amount
    except MoneyError as exc:
        fail(str(exc))
    data = KHQRInput(
        bakong_account_id=account,
        merchant_name=name,
        merchant_city=city,
        currency=chosen_currency,
        amount=exact_amount,
        merchant_id=merchant_id,
        acquiring_bank=acquiring_bank,
        account_information=account_information,
        mcc=mcc,
        bill_number=bill_number,
        mobile_number=mobile_number,
        store_label=store_label,
        terminal_label=terminal_label,
        purpose=purpose,
        language_preference=language_preference,
        merchant_name_alt=name_alt,
        merchant_city_alt=city_alt,
        upi_merchant_account=upi_merchant_account,
        expires_ms=expires_at_ms,
    )
    try:
        encoded = encode(data, now_ms=SystemClock().now_ms() if now_ms is None else now_ms)
    except KHQRError as exc:
        fail(str(exc))
    typer.echo(encoded.qr)


@app.command("decode")
def decode_command(qr: QrText) -> None:
    """Print the decoded fields as JSON (structure only: see `verify`)."""
    try:
        decoded = decode(qr)
    except KHQRError as exc:
        fail(str(exc))
    typer.echo(json.dumps(decoded.as_json(), ensure_ascii=False, indent=2))


@app.command("verify")
def verify_command(
    qr: QrText,
    now_ms: Annotated[
        int | None, typer.Option(help="Judge expiry at this time, epoch ms (default: now).")
    ] = None,
) -> None:
    """Print `valid` (exit 0) or the reason it is not (exit 1)."""
    try:
        verify(qr, now_ms=SystemClock().now_ms() if now_ms is None else now_ms)
    except KHQRError as exc:
        typer.echo(str(exc))
        raise typer.Exit(NOT_VALID) from None
    typer.echo("valid")


@app.command("image")
def image_command(
    qr: QrText,
    output: Annotated[Path, typer.Option("--output", "-o", help="FILE.svg or FILE.png.")],
    card: Annotated[bool, typer.Option(help="Draw the KHQR payment card.")] = False,
    scale: Annotated[
        int | None,
        typer.Option(min=1, max=16, help="Pixels a module (code; 8) or a point (card; 2)."),
    ] = None,
) -> None:
    """Write the QR code, or the payment card, as SVG or PNG."""
    from khqrpay.khqr.image import card_png, card_svg, qr_png, qr_svg  # Pillow and segno

    kind = output.suffix.lower()
    if kind not in (".svg", ".png"):
        fail(f"{output.name}: the file name must end in .svg or .png")
    try:
        if card:
            image = card_svg(qr) if kind == ".svg" else card_png(qr, scale=scale or 2)
        elif kind == ".svg":
            image = qr_svg(qr, scale=scale or 8)
        else:
            image = qr_png(qr, scale=scale or 8)
    except KHQRError as exc:
        fail(str(exc))
    output.write_bytes(image)
    typer.echo(str(output))
