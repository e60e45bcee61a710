"""The composition root: the process entry points and the one place that builds the services.

Nothing imports this package; it imports everything below it (``api``, ``notifications``, ``engine``,
``wallet``, ``kartka``). ``boot.services`` builds the object graph once; ``boot.web`` serves it over HTTP,
``boot.worker`` runs the outbox and the timed jobs on it, ``boot.cli`` is the ``kartka`` command.
"""
