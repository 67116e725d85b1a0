"""Sending: campaigns and their lifecycle, composing and DKIM-signing each message, the SMTP
transport, relay rate budgets, the worker that claims and sends deliveries, the bounce policy."""
