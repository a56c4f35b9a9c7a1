"""The web app (`khqrpay serve`): the shop, the staff console and the JSON API."""
