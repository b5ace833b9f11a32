"""The service shell: HTTP API, recipient pages, delivery, scheduling. Imports `campaigns`."""
