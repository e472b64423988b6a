"""Messages to members: the outbox (queueing with quiet hours, frequency caps and opt-outs), delivery
through the channel adapters, opt-out words, masking of contacts.
"""
