"""Delivery beyond the open tab: notifications still unseen (or unread) a while after they
changed go out through webhooks and email digests, once per group and window (docs/delivery.md)."""
