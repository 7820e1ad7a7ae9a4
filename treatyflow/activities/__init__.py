"""Activities: the hub's I/O."""

from treatyflow.activities.delivery import Deliver, Delivered, Delivery

__all__ = ["Deliver", "Delivered", "Delivery"]
