"""The whole service on one machine (``python -m aam_service``, ``make serve``): the API and a
worker as child processes. It sits above both: neither ``app`` nor ``worker`` imports it."""
