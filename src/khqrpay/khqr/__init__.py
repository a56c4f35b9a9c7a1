"""The KHQR codec: encode, decode and verify KHQR (Bakong) payment strings. Pure: no I/O, no clock.

```python
from khqrpay.khqr import KHQRInput, encode, decode, verify
encoded = encode(KHQRInput("shop@devb", "My Shop", amount=Decimal("1.50"), currency=Currency.USD,
                           expires_ms=now_ms + 600_000), now_ms=now_ms)
verify(encoded.qr, now_ms=now_ms).money  # Money(1.50 USD)
```
"""

from khqrpay.khqr.decode import decode
from khqrpay.khqr.encode import encode
from khqrpay.khqr.errors import (
    KHQRDecodeError,
    KHQRError,
    KHQRInputError,
    KHQRVerifyError,
    SdkCode,
)
from khqrpay.khqr.model import DecodedKHQR, EncodedKHQR, KHQRInput, MerchantType
from khqrpay.khqr.verify import verify

__all__ = [
    "DecodedKHQR",
    "EncodedKHQR",
    "KHQRDecodeError",
    "KHQRError",
    "KHQRInput",
    "KHQRInputError",
    "KHQRVerifyError",
    "MerchantType",
    "SdkCode",
    "decode",
    "encode",
    "verify",
]
