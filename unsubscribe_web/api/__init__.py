"""The admin JSON API under /api/v1 (its route specification and OpenAPI document) and the relay
webhooks under /hooks."""
