"""Normalizer: RawItem to Item (cleaning, boilerplate removal, language, ids and hashes)."""
