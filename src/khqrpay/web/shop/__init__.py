"""What customers see: the catalogue, the cart, checkout, the payment page and My orders."""
