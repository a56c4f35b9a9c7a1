"""khqrpay: automatic KHQR (Bakong) payment verification."""

__version__ = "0.1.0"
