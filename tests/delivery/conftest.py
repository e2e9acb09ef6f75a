"""Fixtures of the delivery tests: the SMTP receiver (tests/delivery/smtp.py)."""

from tests.delivery.smtp import certificate, smtp

__all__ = ["certificate", "smtp"]
