"""Thin controllers: parse, call one domain function in one transaction, shape the answer."""
