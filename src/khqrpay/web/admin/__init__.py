"""The staff console under `/admin`: dashboard, orders, the three buttons, products."""
