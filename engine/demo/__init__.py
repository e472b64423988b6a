"""The demo studio: its workflows (JSON beside this file) and the seeding of a new database.
"""
