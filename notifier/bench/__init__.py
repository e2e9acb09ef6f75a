"""``notifier bench``: scenarios that measure notifier against raw baselines run alongside."""
