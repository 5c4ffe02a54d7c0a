"""eta: the ML lifecycle of a food-delivery ETA model, from raw orders to a served champion."""

__version__ = "0.1.0"
