"""Notifications: the transactional outbox, the worker, channels and providers. Never imports Litestar."""
