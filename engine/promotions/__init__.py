"""Promotions as managed data: the object clients send (``model``), and the pure evaluation core that
prices a cart with the active ones (``evaluate``)."""
