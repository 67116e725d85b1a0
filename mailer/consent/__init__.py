"""Consent: the only writer of consent state (subscribe, confirm, unsubscribe, suppress; the
one-click opt-outs in micro-batches), the ledger view of it, CSV imports of subscribers, and
suppression lists in bulk."""
