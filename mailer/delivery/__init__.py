"""Delivery: compose MIME, sign DKIM, send over SMTP."""
