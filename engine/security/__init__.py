"""Who may do what and what is kept secret: users, roles and sign-in (auth), encryption of secrets at
rest.
"""
