"""``hedgerow demo``: replay a real outage against hedgerow and report what users lived through."""

from hedgerow.demo.cli import main_demo

__all__ = ["main_demo"]
