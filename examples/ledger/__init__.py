"""A small general-ledger schema shaped like Business NXT's, the default target schema."""
