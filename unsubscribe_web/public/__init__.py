"""Subscriber-facing pages: one-click unsubscribe and its landing page, the preference centre,
sign-up and confirmation, the self-service data pages, and the public privacy-policy page."""
