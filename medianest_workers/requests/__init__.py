"""Media requests: two-way sync of `media_requests` with Overseerr/Seerr, webhooks as hints."""
