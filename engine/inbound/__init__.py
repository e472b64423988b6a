"""Inbound provider webhooks: signature checks (``signatures``), payload parsers per provider
(``whatsapp``, ``twilio``, ``email``) and the service that turns them into events and
delivery-status updates (``service``). The HTTP routes are in ``engine/api/inbound.py``."""
