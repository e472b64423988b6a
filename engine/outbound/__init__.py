"""Calls to the outside world other than messages: webhooks (signing, SSRF guard) and the shared
retry/backoff rules.
"""
