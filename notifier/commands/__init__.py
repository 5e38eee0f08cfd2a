"""Commands of the ``notifier`` CLI that live outside ``notifier.cli``, and what every
command shares (``common``): the app itself and its other commands are ``notifier.cli``.

Each command imports what it needs when it runs, not at import, so ``notifier --help``
stays fast and a command never pays for another's dependencies.
"""
