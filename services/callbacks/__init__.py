"""The callbacks service: POSTs an operation's final state to the URL its request named."""
