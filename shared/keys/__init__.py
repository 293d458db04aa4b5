"""Tool keys: the RSA keys Attune signs with, stored encrypted in ``tool_keys``.

- ``crypto``: key-encryption keys (KEKs) from settings, key generation, AES-GCM wrapping.
- ``store``: the key store and its rotation; written only by the jwks service and
  ``attune keys``.
- ``signer``: ``ToolSigner``, what every other service signs with.
"""
