"""`notifier bench`: measure the service against its performance budget."""
