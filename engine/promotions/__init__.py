"""Promotions as managed data: the object clients send (``model``), and the pure evaluation core that
prices a cart with the active ones (``evaluate``), compiled when its build is current (``native``)."""

from engine.promotions.native import native_path

__path__ = native_path(__path__)
