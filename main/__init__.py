"""The composition root: the process entry points and the one place that builds the services.

Nothing imports this package; it imports everything below it (``api``, ``notifications``, ``engine``,
``wallet``, ``kartka``). ``main.services`` builds the object graph once; ``main.web`` serves it over HTTP,
``main.worker`` runs the outbox and the timed jobs on it, ``main.cli`` is the ``kartka`` command.
"""
