"""A studio's data over time: retention (pruning), a member's data (export, erasure), backups.
"""
