"""The domain: who may receive what, when, and why.

Pure Python and SQL. This package never imports litestar, aiosmtplib, apscheduler or mailer.
"""
